"""Chat models for the CKEPE chain, chosen by a config string.

* ``openai:<model>``: ``langchain_openai.ChatOpenAI``; with ``base_url`` it talks to any
  OpenAI-compatible server (vLLM, llama.cpp, LM Studio, Azure-compatible gateways).
* ``ollama:<model>``: ``langchain_ollama.ChatOllama`` (``base_url`` defaults to localhost).
* ``<provider>:<model>``: anything ``langchain.chat_models.init_chat_model`` knows.

API keys come from environment variables only (``LLMConfig.api_key_env``, default
``OPENAI_API_KEY``); they are never read from config files or the command line.
"""

from __future__ import annotations

import os

from merl.core.config import ConfigError
from merl.knowledge.config import LLMConfig

_PACKAGES = {"openai": "langchain-openai", "ollama": "langchain-ollama", "anthropic": "langchain-anthropic",
             "google_genai": "langchain-google-genai", "mistralai": "langchain-mistralai"}


def _missing(provider: str, err: ImportError) -> ConfigError:
    pkg = _PACKAGES.get(provider, f"the LangChain integration for {provider!r}")
    return ConfigError(f"LLM provider {provider!r} needs {pkg} (pip install {pkg}; or 'merl-ray[llm]'): {err}")


def make_chat_model(cfg: LLMConfig):
    """A LangChain chat model for ``cfg.model``; ConfigError for bad specs or missing packages."""
    if not cfg.model:
        raise ConfigError("no LLM configured (llm.model is empty); the offline composer needs none")
    provider, sep, name = cfg.model.partition(":")
    if not sep or not name:
        raise ConfigError(f"llm.model {cfg.model!r} must look like provider:model, e.g. openai:gpt-4o-mini or ollama:llama3.1")
    if provider == "openai":
        try:
            from langchain_openai import ChatOpenAI
        except ImportError as e:
            raise _missing(provider, e) from None
        key = os.environ.get(cfg.api_key_env)
        if not key:
            if not cfg.base_url:
                raise ConfigError(
                    f"set the {cfg.api_key_env} environment variable for {cfg.model} (or give base_url for a local server)"
                )
            key = "EMPTY"  # local OpenAI-compatible servers accept any key
        return ChatOpenAI(model=name, base_url=cfg.base_url, api_key=key, temperature=cfg.temperature, timeout=cfg.timeout_s)
    if provider == "ollama":
        try:
            from langchain_ollama import ChatOllama
        except ImportError as e:
            raise _missing(provider, e) from None
        kw = {"base_url": cfg.base_url} if cfg.base_url else {}
        return ChatOllama(model=name, temperature=cfg.temperature, **kw)
    from langchain.chat_models import init_chat_model

    kw = {"base_url": cfg.base_url} if cfg.base_url else {}
    try:
        return init_chat_model(name, model_provider=provider, temperature=cfg.temperature, **kw)
    except ImportError as e:
        raise _missing(provider, e) from None
    except ValueError as e:
        raise ConfigError(f"llm.model {cfg.model!r}: {e}") from None
