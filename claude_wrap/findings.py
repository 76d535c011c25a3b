"""What a health check found (`claude-wrap doctor`): a level, one line saying what was found,
and for anything not ok the fix. Each check lives with what it checks (the credentials file's in
storage/, the lock folders' in locks/, the keeper's in keeper/, ...); doctor asks each and
renders what they found."""

from __future__ import annotations

TYPE_CHECKING = False  # imports nothing: the modules holding checks stay as cheap as they were
if TYPE_CHECKING:
    from typing import Any

class Level:
    """How bad a finding is: ok, worth a warning, or a failure doctor reports as unhealthy."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


class Finding:
    __slots__ = ("check", "data", "fix", "level", "message")

    def __init__(
        self,
        check: str,
        level: str,
        message: str,
        fix: str | None = None,
        **data: Any,
    ) -> None:
        self.check = check
        self.level = level
        self.message = message
        self.fix = fix
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "level": self.level,
            "message": self.message,
            "fix": self.fix,
            **self.data,
        }
