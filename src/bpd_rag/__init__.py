"""bpd-rag: a source-grounded patient-education chatbot about ketamine therapy for BPD."""

import os

# The product runs offline: no library may reach a model hub or send telemetry. These are set here,
# before any submodule imports transformers or chromadb, so the app is offline even outside the tests.
for _name, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("ANONYMIZED_TELEMETRY", "False"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
