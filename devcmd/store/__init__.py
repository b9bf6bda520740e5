"""Redis persistence: key helpers, Lua scripts and one store class per resource."""
