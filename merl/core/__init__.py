"""The ground layer: config loading, atomic IO, Ray connection, the task table, the text-model
location. It imports nothing else of the project, so every other layer may import it."""
