"""The ground layer: config loading, atomic IO, Ray connection, the task table, the text-model
location, environment defaults (env) and local-path-or-URI handling (uri). It imports nothing
else of the project, so every other layer may import it."""
