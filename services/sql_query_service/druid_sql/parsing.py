"""Pass 1: Druid SQL text → one sqlglot statement, or 400 with the line and column.

The size of a query is bounded before anything recursive sees it: its characters, then
its tokens and parenthesis nesting (sqlglot's tokenizer is a loop), then the depth of the
parsed tree (an iterative walk). sqlglot's parser, the passes, the generator and
PostgreSQL's planner all recurse over the tree: a chain of 3,000 `AND`s is 3,000 levels
deep, beyond Python's recursion limit and PostgreSQL's `max_stack_depth`.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from sql_query_service.druid_sql.problems import SqlError

# Dashboards send a few KB; anything far larger is abuse, not a query.
MAX_QUERY_CHARS = 100_000
# A reseller's IN list of 5,000 customers is ~10,000 tokens; parsing 20,000 takes ~0.15 s.
MAX_TOKENS = 20_000
# Parenthesis nesting beyond this is refused before sqlglot recurses into it.
MAX_NESTING = 64
# Tree depth (a chain of n ANDs, ORs or +s is n deep): dashboard queries reach ~10; below what
# exhausts Python's 1,000 frames (the service translates ~15 frames deep, a pass recurses
# ≤ 2 frames a level: unit-tested with 150 frames more) and PostgreSQL's (~4,000 +s).
MAX_DEPTH = 300


def _check_tokens(tokens: list[Token]) -> None:
    """400 for more than MAX_TOKENS tokens or parentheses nested deeper than MAX_NESTING."""
    if len(tokens) > MAX_TOKENS:
        raise SqlError(f"The query has more than {MAX_TOKENS:,} tokens")
    depth = 0
    for token in tokens:
        if token.token_type == TokenType.L_PAREN:
            depth += 1
            if depth > MAX_NESTING:
                raise SqlError(f"The query nests deeper than {MAX_NESTING} levels",
                               token.line, token.col)
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1


def depth(tree: exp.Expression, limit: int = MAX_DEPTH) -> int:
    """The tree's depth (a leaf is 1), counted without recursion; stops past `limit`."""
    deepest, stack = 0, [(tree, 1)]
    while stack and deepest <= limit:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node.iter_expressions())
    return deepest


PLACEHOLDER_PREFIX = "__p"


def _number_placeholders(text: str, tokens: list[Token]) -> str:
    """`?` → `:__p0`, `:__p1`… in textual order (sqlglot's tree order is not textual).

    Positions come from the tokenizer, so a `?` inside a string or comment is untouched.
    """
    # sqlglot reads TIMESTAMPDIFF's third argument as a keyword (losing a column's case):
    # the call is renamed (same length, positions kept) and parsed as an ordinary function
    for token, following in zip(tokens, tokens[1:], strict=False):
        if token.text.upper() == "TIMESTAMPDIFF" and following.token_type == TokenType.L_PAREN:
            text = f"{text[:token.start]}{_TIMESTAMPDIFF}{text[token.end + 1:]}"
    marks = [t.start for t in tokens if t.token_type == TokenType.PLACEHOLDER and t.text == "?"]
    for index, start in reversed(list(enumerate(marks))):
        text = f"{text[:start]}:{PLACEHOLDER_PREFIX}{index}{text[start + 1:]}"
    return text


_TIMESTAMPDIFF = "ES_TIMESTDIFF"  # as long as TIMESTAMPDIFF


def parse(text: str) -> exp.Expression:
    """The single statement of `text` (a trailing `;` is allowed)."""
    if not text.strip():
        raise SqlError("The query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise SqlError(f"The query is longer than {MAX_QUERY_CHARS:,} characters")
    dialect = sqlglot.Dialect.get_or_raise("druid")
    try:
        tokens = dialect.tokenize(text)
        _check_tokens(tokens)
        numbered = _number_placeholders(text, tokens)
        statements = [s for s in dialect.parse(numbered) if s is not None]
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        raise SqlError(
            f"Syntax error: {first.get('description', 'invalid syntax')}",
            first.get("line"), first.get("col"),
        ) from None
    except TokenError as error:
        raise SqlError(f"Syntax error: {error}") from None
    except RecursionError:
        raise SqlError("The query is too deeply nested") from None
    except SqlError:
        raise
    except Exception as error:  # noqa: BLE001 - sqlglot raises others on odd input; never a 500
        raise SqlError(f"Syntax error: {type(error).__name__}") from None
    if len(statements) != 1:
        raise SqlError("Only one statement is allowed")
    if depth(statements[0]) > MAX_DEPTH:
        raise SqlError(f"The query nests deeper than {MAX_DEPTH} levels"
                       " (count the operands of each AND, OR, + chain)")
    _check_table_names(statements[0], numbered)
    return _unit_arguments(statements[0])


def _check_table_names(tree: exp.Expression, text: str) -> None:
    """400 for a string literal where a table name belongs (`FROM 'sdk-emea-realtime'`):
    a syntax error in Druid, which sqlglot reads as a quoted name."""
    for table in tree.find_all(exp.Table):
        for part in table.parts:
            start = part.meta.get("start")
            if start is not None and text[start:start + 1] == "'":
                raise SqlError("Syntax error: a string literal where a table name belongs"
                               ' (quote names with "double quotes")',
                               part.meta.get("line"), part.meta.get("col"))


def _unit_arguments(tree: exp.Expression) -> exp.Expression:
    """TIMESTAMPADD/TIMESTAMPDIFF(unit, …): the unit is a keyword, not a column (sqlglot reads
    a column): both become Anonymous(Var(unit), …)."""
    for node in list(tree.find_all(exp.Anonymous)):
        name = node.name.upper()
        if name not in ("TIMESTAMPADD", _TIMESTAMPDIFF):
            continue
        args = list(node.expressions)
        name = "TIMESTAMPDIFF" if name == _TIMESTAMPDIFF else name
        if args and isinstance(args[0], exp.Column) and not args[0].table:
            args[0] = exp.Var(this=args[0].name.upper())
        replacement = exp.Anonymous(this=name, expressions=[a for a in args if a is not None])
        if node is tree:
            return replacement
        node.replace(replacement)
    return tree
