"""Each provider's own shape of a chat request's structure (messages with images, tool calls and
results; tools and the choice among them; structured output) and of what its stream answers
(tool calls, reasoning), one module per API, shared by the adapters beside them."""
