"""Where the bundled test fixtures live (see fixtures/README.md for their origin)."""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
LLADA_TINY = FIXTURES / "llada-tiny"
DREAM_TINY = FIXTURES / "dream-tiny"
GSM8K_TEST = FIXTURES / "data" / "gsm8k" / "test.jsonl"
