"""engine.keys: the one place a cache key is computed (the keys of a cache written before issue 14 are
checked whole by test_cache_compat.py)."""

from __future__ import annotations

from engine.cache import CACHE_SCHEMA
from engine.config import ModelConfig
from engine.keys import KEY_VERSION, Keys, cache_key
from engine.providers import create_provider, provider_class
from engine.request import Decoding, Request

REQUEST = Request((("user", "Q?\nA. x\nB. y"),), Decoding(0.0, 8, 1.0, None), 0, "letter", ("A", "B"), True)


def test_transformers_and_its_alias_local_share_every_key():
    local = ModelConfig(id="a", provider="local", model="embedded")
    transformers = ModelConfig(id="b", provider="transformers", model="embedded")
    assert provider_class("transformers") is provider_class("local")
    keys = Keys({"a": create_provider(local), "b": create_provider(transformers)})
    # The embedded model's identity is its weights' hash; the provider's own name is "local" either way.
    assert keys.of(local, REQUEST) == keys.of(transformers, REQUEST) == cache_key("local", keys.identity(local), REQUEST)


def test_the_key_version_is_not_the_files_schema():
    # Both 1, as the one constant they were: a cache-file migration must be able to bump CACHE_SCHEMA
    # without orphaning a single cached answer.
    assert (KEY_VERSION, CACHE_SCHEMA) == (1, 1)
    # main at 4ce1bf3 (engine.cache.cache_key then) gave this key for this request
    assert cache_key("openai", {"model": "m"}, REQUEST) == "0f4cdf0775e1c5e8c196a44c03ecd7c1e771768c90214ba406a89e885b2c4392"
