"""The ``memory`` toolset: an agent recalls and adds to its session's conversation memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic_ai.toolsets import FunctionToolset

if TYPE_CHECKING:
    from include.state.embedded import EmbeddedState
    from operators.hooks.cassandra import CassandraHook

#: The most turns one ``recall_memory`` call returns.
MAX_RECALL = 20
#: The longest note ``remember`` keeps, in characters.
MAX_NOTE_CHARS = 2000


class MemoryToolset(FunctionToolset[Any]):
    """``recall_memory`` and ``remember`` over one session's memory, id ``memory``.

    The agent operator builds one per run, for the run's rendered ``session_id``, on the same
    state backend as the run's ``message_history`` (Cassandra, or the embedded SQLite store).
    ``remember`` stores a note as a turn of its own, so the next runs of the session load it
    with the rest of the history.

    :param session_id: the conversation.
    :param state: the state backend (``operators.hooks.cassandra.state_backend``).
    """

    def __init__(self, session_id: str, state: CassandraHook | EmbeddedState) -> None:
        super().__init__([self.recall_memory, self.remember], id="memory")
        self.session_id = session_id
        self.state = state

    def recall_memory(self, last_turns: int = 5) -> list[dict[str, Any]]:
        """Return what earlier conversations of this session said, newest last.

        :param last_turns: how many earlier turns to return (1-20).
        """
        from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, ToolCallPart, UserPromptPart

        turns = self.state.memory().turns(
            self.session_id, last_turns=max(1, min(int(last_turns), MAX_RECALL))
        )
        recalled = []
        for turn in turns:
            said: list[str] = []
            for message in turn.messages:
                for part in message.parts:
                    if isinstance(message, ModelRequest) and isinstance(part, UserPromptPart):
                        said.append(f"user: {part.content}")
                    elif isinstance(message, ModelResponse) and isinstance(part, TextPart):
                        said.append(f"agent: {part.content}")
                    elif (
                        isinstance(message, ModelResponse)
                        and isinstance(part, ToolCallPart)
                        and part.tool_name == "final_result"
                    ):
                        said.append(f"agent answered: {part.args_as_json_str()}")
            recalled.append({"at": turn.at.isoformat(), "run_id": turn.run_id, "said": said})
        return recalled

    def remember(self, note: str) -> str:
        """Keep a short note about this customer or conversation for later runs.

        :param note: the fact to remember, in one or two sentences.
        """
        from pydantic_ai.messages import ModelRequest, UserPromptPart

        text = str(note).strip()
        if not text:
            raise ValueError("note is empty")
        if len(text) > MAX_NOTE_CHARS:
            raise ValueError(f"note is {len(text)} characters; the most is {MAX_NOTE_CHARS}")
        self.state.memory().append(
            self.session_id,
            [ModelRequest(parts=[UserPromptPart(content=f"[note remembered by the agent] {text}")])],
        )
        return "remembered"
