"""GSM8K (grade-school math word problems): openai/gsm8k (main, test; 1,319 problems), its prompt styles and
the rewards that grade it.

Styles: d1's ``<reasoning>``/``<answer>`` format (``d1``, the default; ``tasks/styles.py``) and
lm-evaluation-harness's chain-of-thought few-shot ``gsm8k_cot`` (8 exemplars) and ``gsm8k_cot_5shot``
(dllm's LLaDA-8B-Instruct reproduction, ``--num_fewshot 5``: GSM8K 74.7), cut at ``Q:`` (lm-eval's
``until``) before grading. LLaDA's own GSM8K number comes from an internal toolkit whose prompts are not
published; the public reproductions run these. The exemplars are lm-eval's
(MIT licence, ``lm_eval/tasks/gsm8k/gsm8k-cot.yaml``: the chain-of-thought exemplars of Wei et al.,
2022), reproduced as data.

Graded by ``gsm8k_correct`` (the score), lm-eval's strict-match and d1's parser (``rewards/gsm8k.py``);
the id is the row index.
"""
from __future__ import annotations

from unmask.rewards import gsm8k_correct, gsm8k_gold, gsm8k_prediction, gsm8k_strict_match
from unmask.rewards.gsm8k import gsm8k_correct_d1

from .benchmark import D1_PUBLISHED, Benchmark
from .prompts import QUESTION, PromptTemplate, first_column, messages
from .registry import register_benchmark, register_template

# (question, target): lm-eval gsm8k_cot, fewshot sampler first_n
GSM8K_COT_EXEMPLARS = (
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
     "there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
     "been 21 - 15 = 6. The answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
     "they had 74 - 35 = 39. The answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
     "The answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. "
     "The answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers "
     "were added. 9 + 20 is 29. The answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he "
     "had 35 - 2 = 33 golf balls. The answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
     "left. 23 - 15 is 8. The answer is 8."),
)
GSM8K_COT_STOP = ("Q:",)


def gsm8k_cot_prompt(question: str, shots: int = 8) -> str:
    """lm-eval ``gsm8k_cot``: ``Q: …\\nA: …`` exemplars joined by blank lines, then ``Q: {question}\\nA:``."""
    if not 0 <= shots <= len(GSM8K_COT_EXEMPLARS):
        raise ValueError(f"gsm8k_cot has {len(GSM8K_COT_EXEMPLARS)} exemplars; asked for {shots}")
    turns = [f"Q: {q}\nA: {a}" for q, a in GSM8K_COT_EXEMPLARS[:shots]] + [f"Q: {question}\nA:"]
    return "\n\n".join(turns)


register_template(PromptTemplate(
    "gsm8k_cot", (QUESTION,), lambda row, system: messages(gsm8k_cot_prompt(first_column(row, QUESTION)), system),
    stop=GSM8K_COT_STOP))
register_template(PromptTemplate(
    "gsm8k_cot_5shot", (QUESTION,),  # dllm's LLaDA-8B-Instruct reproduction: --num_fewshot 5
    lambda row, system: messages(gsm8k_cot_prompt(first_column(row, QUESTION), shots=5), system),
    stop=GSM8K_COT_STOP))

register_benchmark(Benchmark(
    "gsm8k", "openai/gsm8k", "main", "test", "d1", None,
    gold=lambda row: str(gsm8k_gold(row["answer"])),
    extract=lambda text, row: "" if (v := gsm8k_prediction(text)) is None else str(v),
    graders={"gsm8k_correct": gsm8k_correct, "lm_eval_strict": gsm8k_strict_match, "d1_parser": gsm8k_correct_d1},
    size=1319, reproduces={"lm_eval_strict": "lm-eval's gsm8k_cot strict-match", "d1_parser": D1_PUBLISHED}))
