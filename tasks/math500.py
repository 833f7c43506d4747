"""MATH-500 (competition mathematics): HuggingFaceH4/MATH-500 (test; 500 problems), its prompt styles and
the rewards that grade it.

Styles: MDPO's instruction after the problem, "output the final answer within \\boxed{}" (``boxed``, the
default) and lm-evaluation-harness's ``minerva_math`` (4-shot; dllm's LLaDA-8B-Instruct reproduction:
MATH 31.9), cut at ``Problem:`` (lm-eval's ``until``) before grading. The exemplars are lm-eval's (MIT
licence, ``lm_eval/tasks/minerva_math/utils.py``; Lewkowycz et al., 2022), reproduced as data, quirks
included (the stray ``}`` after the first problem is theirs).

Graded by math-verify (``math_correct``, the score) and d1's ``is_equiv`` (``rewards/math_rewards.py``);
the id is the ``unique_id`` column.
"""
# ruff: noqa: E501  (the Minerva exemplars below are lm-eval's text verbatim, long lines included)
from __future__ import annotations

from unmask.rewards import math_correct, math_correct_d1, math_prediction

from .benchmark import D1_PUBLISHED, Benchmark
from .prompts import QUESTION, PromptTemplate, first_column, messages
from .registry import register_benchmark, register_template

BOXED_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."

MINERVA_MATH_PROMPT = r"""Problem:
Find the domain of the expression  $\frac{\sqrt{x-2}}{\sqrt{5-x}}$.}

Solution:
The expressions inside each square root must be non-negative. Therefore, $x-2 \ge 0$, so $x\ge2$, and $5 - x \ge 0$, so $x \le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$. Therefore, the domain of the expression is $\boxed{[2,5)}$.
Final Answer: The final answer is $[2,5)$. I hope it is correct.

Problem:
If $\det \mathbf{A} = 2$ and $\det \mathbf{B} = 12,$ then find $\det (\mathbf{A} \mathbf{B}).$

Solution:
We have that $\det (\mathbf{A} \mathbf{B}) = (\det \mathbf{A})(\det \mathbf{B}) = (2)(12) = \boxed{24}.$
Final Answer: The final answer is $24$. I hope it is correct.

Problem:
Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many times must Terrell lift them in order to lift the same total weight?

Solution:
If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\cdot 12\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of $2\cdot15\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$:
\begin{align*}
30n&=480\\
\Rightarrow\qquad n&=480/30=\boxed{16}
\end{align*}
Final Answer: The final answer is $16$. I hope it is correct.

Problem:
If the system of equations

\begin{align*}
6x-4y&=a,\\
6y-9x &=b.
\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero,
find $\frac{a}{b},$ assuming $b$ is nonzero.

Solution:
If we multiply the first equation by $-\frac{3}{2}$, we obtain

$$6y-9x=-\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have

$$-\frac{3}{2}a=b\Rightarrow\frac{a}{b}=\boxed{-\frac{2}{3}}.$$
Final Answer: The final answer is $-\frac{2}{3}$. I hope it is correct."""
MINERVA_MATH_STOP = ("Problem:",)


def minerva_math_prompt(problem: str) -> str:
    """lm-eval ``minerva_math`` (4-shot): the exemplars, then ``Problem:\\n{problem}\\n\\nSolution:``."""
    return f"{MINERVA_MATH_PROMPT}\n\nProblem:\n{problem}\n\nSolution:"


register_template(PromptTemplate(
    "boxed", (QUESTION,),  # MDPO's instruction
    lambda row, system: messages(f"{first_column(row, QUESTION)}\n{system or BOXED_INSTRUCTION}", None)))
register_template(PromptTemplate(
    "minerva_math", (QUESTION,), lambda row, system: messages(minerva_math_prompt(first_column(row, QUESTION)), system),
    stop=MINERVA_MATH_STOP))

register_benchmark(Benchmark(
    "math500", "HuggingFaceH4/MATH-500", None, "test", "boxed", "unique_id",
    gold=lambda row: str(row["answer"]), extract=lambda text, row: math_prediction(text),
    graders={"math_verify": math_correct, "d1_is_equiv": math_correct_d1}, default_length=512, size=500,
    reproduces={"d1_is_equiv": D1_PUBLISHED}))
