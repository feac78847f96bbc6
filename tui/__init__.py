"""chat-tui: chat with Hugging Face transformers models in the terminal."""

__version__ = "0.1.0"
