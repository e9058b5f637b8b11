"""Real-component helpers shared by the tests and the benchmark: servers, agents, AgentKit."""
