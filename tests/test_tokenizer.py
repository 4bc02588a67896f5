"""The offline T5-style tokenizer."""

from __future__ import annotations

from r2d.model.tokenizer import train_tokenizer


def test_t5_special_tokens_and_eos_appended(tiny_tokenizer):
    assert (tiny_tokenizer.pad_token_id, tiny_tokenizer.eos_token_id, tiny_tokenizer.unk_token_id) == (0, 1, 2)
    ids = tiny_tokenizer("chest pain").input_ids
    assert ids[-1] == tiny_tokenizer.eos_token_id and ids.count(tiny_tokenizer.eos_token_id) == 1
    assert tiny_tokenizer.decode(ids, skip_special_tokens=True) == "chest pain"


def test_unknown_text_does_not_crash_and_is_deterministic():
    texts = ["fever and cough", "chest pain radiating to the arm"] * 5
    a, b = train_tokenizer(texts, 60), train_tokenizer(texts, 60)
    assert a.get_vocab() == b.get_vocab()
    assert a("şğü 🙂 zzz").input_ids[-1] == a.eos_token_id


def test_save_and_reload(tmp_path, tiny_tokenizer):
    from transformers import AutoTokenizer

    tiny_tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    prompt = "given label: 3, explain: fever"
    assert again(prompt).input_ids == tiny_tokenizer(prompt).input_ids


def test_every_digit_is_one_token_and_numbers_round_trip():
    tok = train_tokenizer(["blood pressure 120/80 mmHg, heart rate 84/min", "SpO2 97%, temperature 36.6 °C"] * 5, 80)
    text = "blood pressure 905/61 mmHg, temperature 35.2 °C"  # numbers (and a 5) the corpus never had
    pieces = tok.convert_ids_to_tokens(tok(text).input_ids)
    digits = [p for p in pieces if any(ch.isdigit() for ch in p)]
    assert digits == list("90561352")
    assert tok.unk_token not in pieces
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text
