"""One exception family for the whole core.

Every error an operator can see is a :class:`QmsPanelError`: a short title that reads
like a status line ("Docker engine unreachable") and a detail that says what and why, and
where it helps, what to do. Library errors (docker-py, httpx, MCP, OSError) are translated
at the edge of the module that called the library; nothing above ``core`` sees them.

``str(err)`` is the one line the CLI prints.
"""

from __future__ import annotations


class QmsPanelError(Exception):
    """Root of every error qms-panel raises on purpose."""

    title: str = "qms-panel error"

    def __init__(self, detail: str = "", *, title: str | None = None) -> None:
        if title is not None:
            self.title = title
        self.detail = detail
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.title}: {self.detail}" if self.detail else self.title


# --- settings and input -----------------------------------------------------------------


class SettingsError(QmsPanelError):
    title = "Bad configuration"


class UsageError(QmsPanelError):
    """A command line the program cannot act on (exit code 2)."""

    title = "Usage"


class InvalidAgentId(QmsPanelError):
    title = "Invalid agent id"


class InvalidDocumentId(QmsPanelError):
    title = "Invalid document id"


# --- Docker engine and containers -------------------------------------------------------


class EngineError(QmsPanelError):
    title = "Docker error"


class EngineUnreachable(EngineError):
    title = "Docker engine unreachable"


class EnginePermissionDenied(EngineError):
    title = "Permission denied on the Docker socket"


class ImageMissing(EngineError):
    title = "Agent image missing"


class NameConflict(EngineError):
    title = "Container name taken"


class MountSourceMissing(EngineError):
    title = "Mount source missing"


class ContainerNotFound(EngineError):
    title = "No such agent container"


class ContainerNotRunning(EngineError):
    title = "Agent container not running"


class NotManaged(EngineError):
    title = "Container not made by qms-panel"


class OtherProject(NotManaged):
    """A container or volume qms-panel made for another project root."""

    title = "Container of another project"


class ImageBuildFailed(EngineError):
    title = "Image build failed"


# --- MCP link and QMS operations --------------------------------------------------------


class McpError(QmsPanelError):
    title = "MCP error"


class LinkDown(McpError):
    title = "MCP link down"


class ReplyLost(LinkDown):
    """A call was sent but its reply never came: the connection closed during it."""

    title = "MCP reply lost"


class CallTimeout(McpError):
    """A call was sent but not answered within the call timeout (the server may still act on it)."""

    title = "MCP call timed out"


class ServerReplyError(McpError):
    title = "Unexpected reply from the MCP server"


class QmsOperationError(QmsPanelError):
    title = "QMS operation failed"


class WorkspaceCopyMissing(QmsOperationError):
    title = "Workspace copy missing"


class UnsafeCopy(QmsOperationError):
    """A workspace entry that is not a regular file in the real workspace folder (a link, a fifo...)."""

    title = "Unsafe workspace copy"


class FeedEnded(QmsPanelError):
    """A live feed (a board's engine stream or file watcher) ended: live state stops following."""

    title = "Live feed ended"


class GatewayError(QmsPanelError):
    """The agent gateway could not start or serve (bind failed, bad feed token file)."""

    title = "Gateway failed"


class FeedDown(QmsPanelError):
    """The gateway's live feed cannot be read: nothing listens there, the token is missing or refused."""

    title = "Gateway feed down"


class ProjectError(QmsPanelError):
    title = "Bad project"


class QmsFileUnreadable(ProjectError):
    title = "QMS file unreadable"


class DevServerError(QmsPanelError):
    title = "Dev server failed"


class PortInUse(DevServerError):
    title = "Port in use"


# --- qms-panel's own records ------------------------------------------------------------


class ActionLogError(QmsPanelError):
    """The action log could not be written (or read): an action must not run off the record."""

    title = "Action log unwritable"
