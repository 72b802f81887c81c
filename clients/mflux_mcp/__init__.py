"""mflux-server-mcp: a Model Context Protocol server (stdio) that lets agents generate images on an mflux-server.

It is a thin translator: MCP tool calls from an agent become HTTP calls on a running mflux-server, so one GPU
server can serve many agents (each agent's MCP client starts its own copy of this process).

    python -m mflux_mcp --server http://127.0.0.1:4030 [--api-key KEY] [--wait-seconds 50]

Modules: `settings` (configuration), `backend` (async calls on the HTTP client), `follow` (waiting for a task),
`tools` (what each tool does), `results` and `errors` (what the agent reads), `server` (the MCP tool
declarations), `__main__` (the command line).
"""

# Nothing is imported here: `mcp` is an optional dependency (the `mcp` extra), and `python -m mflux_mcp` without
# it should reach __main__'s explanation rather than fail on this package's import.
