"""Keep chosen Ollama models resident in a tmpfs RAM disk.

Standard library only: this package runs on the controller (the
``ollama-ramdisk`` CLI), inside Ansible modules and on every managed host as
the ``ExecStartPre`` command of ``ollama.service`` under the system Python.
"""

__version__ = "0.1.0"
