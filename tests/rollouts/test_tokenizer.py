"""The built-in byte tokenizer: lossless on any text, special ids from the model config."""
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from unmask.rollouts.tokenizer import TokenizerError, byte_tokenizer

TOK = byte_tokenizer(mask_token_id=500, eos_token_id=501, bos_token_id=502)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip_and_one_token_per_byte(text):
    assume(not any(t in text for t in TOK.all_special_tokens))  # special-token strings parse as specials
    ids = TOK(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))
    assert TOK.decode(ids) == text


def test_special_tokens_take_the_config_ids():
    assert (TOK.mask_token_id, TOK.eos_token_id, TOK.pad_token_id, TOK.bos_token_id) == (500, 501, 501, 502)
    assert TOK("a<|mask|>b", add_special_tokens=False)["input_ids"] == [97, 500, 98]
    assert TOK.decode([104, 105, 501], skip_special_tokens=True) == "hi"


def test_special_ids_must_not_collide_with_bytes():
    with pytest.raises(TokenizerError, match="256 or more"):
        byte_tokenizer(mask_token_id=65, eos_token_id=501)
    with pytest.raises(TokenizerError, match="distinct"):
        byte_tokenizer(mask_token_id=501, eos_token_id=501)
