"""The task lifecycle: what happens to a task between the surfaces that take requests (HTTP, the
CLI) and the seams that keep and move it (store, queue, events, limits). Every surface and the
worker call these use cases; none of them decides a task's fate on its own.

One module a use case: `submit`, `cancel`, `retry`, `delete` (a conversation), `turns` (release a
conversation's next turn), with what they share in `admission` (a key's limits), `stop` (ending a
task's stream and its run) and `read` (one task as a client sees it).
"""

from aitasks.lifecycle.cancel import cancel_task
from aitasks.lifecycle.delete import delete_conversation
from aitasks.lifecycle.read import read_task
from aitasks.lifecycle.retry import retry_task
from aitasks.lifecycle.submit import submit_task

__all__ = ["cancel_task", "delete_conversation", "read_task", "retry_task", "submit_task"]
