"""Fleet: the agent on every machine, the worker registry, samples, alerts, SLOs and commands."""
