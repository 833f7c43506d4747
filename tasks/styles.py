"""The generic prompt styles, for any dataset with a question column (``question``, ``prompt`` or
``problem``): d1's ``<reasoning>``/``<answer>`` format (``d1``, the schema's default and GSM8K's) and the
bare question (``plain``). Task-specific styles live in their task's file.
"""
from __future__ import annotations

from .prompts import QUESTION, PromptTemplate, first_column, messages
from .registry import register_template

D1_SYSTEM_PROMPT = """Respond in the following format:
<reasoning>
...
</reasoning>
<answer>
...
</answer>"""

register_template(PromptTemplate(
    "d1", (QUESTION,),
    # d1 puts its format instructions before the question in the user turn (LLaDA has no system default)
    lambda row, system: messages(f"{system or D1_SYSTEM_PROMPT}\n\n{first_column(row, QUESTION)}", None)))
register_template(PromptTemplate(
    "plain", (QUESTION,), lambda row, system: messages(first_column(row, QUESTION), system)))
