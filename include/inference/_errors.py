"""The inference errors: subclasses of the project's ``AgentFlowError`` (see ``include.errors``)."""

from __future__ import annotations

from include.errors import AgentFlowError, ConfigurationError


class InferenceError(AgentFlowError):
    """Base class of every error the OpenVINO inference code raises on purpose."""


class UnknownModelError(InferenceError, ConfigurationError):
    """A model name is not in the registry; the message lists the known names."""


class ConversionError(InferenceError):
    """Converting a model to OpenVINO IR failed; the message names the model and source."""


class CorruptModelError(InferenceError):
    """A converted model (IR) could not be read or compiled; the message names the model and path."""


class DeviceNotAvailableError(InferenceError, ConfigurationError):
    """The configured OpenVINO device is not present; the message lists the devices there are."""


class UnsupportedHardwareError(InferenceError):
    """The CPU is not an Intel CPU and the hardware policy is ``fail``."""


class InferenceServerError(InferenceError):
    """The per-node inference server could not be reached or answered with an error."""


class InvalidTextError(InferenceError, ValueError):
    """Some texts of a batch are empty or longer than the model's ``max_length``.

    The valid texts were still computed: ``results`` holds their results in input order,
    with ``None`` at the invalid indices.

    :param model: the model the batch was for.
    :param errors: text index -> what is wrong with it.
    :param results: per-index results (``None`` where invalid), or ``None`` if not computed.
    """

    def __init__(self, model: str, errors: dict[int, str], results: list[object] | None = None) -> None:
        self.model = model
        self.errors = dict(sorted(errors.items()))
        self.results = results
        shown = "; ".join(f"text {i}: {why}" for i, why in list(self.errors.items())[:10])
        more = f" (and {len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
        super().__init__(f"model {model!r}: {len(self.errors)} invalid text(s): {shown}{more}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.model, self.errors, self.results))
