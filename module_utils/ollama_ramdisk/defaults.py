"""The defaults of the command's options, in one place: the core, the command's
help, the modules' argument specs and the roles' defaults are checked against
these (tests/test_defaults.py). Nothing is imported here, so reading them
costs a command nothing."""

# plan: the RAM disk is the set's bytes times this.
HEADROOM = 1.2
# populate, writeback, verify: how long a run waits for another on a store (s).
LOCK_TIMEOUT = 600.0
# populate: parallel copies by default, one per CPU up to this.
MAX_JOBS = 4
# verify: blobs hashed at once (a check beside a serving Ollama stays gentle).
VERIFY_JOBS = 1
# writeback: kept free on the disk store.
WRITEBACK_RESERVE = "1g"
# preload: waiting for the API (s), loads tried per model, longest load (s).
PRELOAD_WAIT = 120.0
PRELOAD_RETRIES = 3
PRELOAD_LOAD_TIMEOUT = 600.0
# preload, status: Ollama's address when OLLAMA_HOST does not say.
OLLAMA_HOST = "127.0.0.1:11434"
# status --prometheus: models given per-model series (any API client can make
# models, each adding a handful of series labelled with its name).
METRICS_MAX_MODELS = 200
