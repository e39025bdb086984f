"""The task lifecycle: what happens to a task between the surfaces that take requests (HTTP, the
CLI) and the seams that keep and move it (store, queue, events, limits). Every surface and the
worker call these use cases; none of them decides a task's fate on its own."""
