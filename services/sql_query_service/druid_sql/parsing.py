"""Pass 1: Druid SQL text → one sqlglot statement, or 400 with the line and column."""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from sql_query_service.druid_sql.problems import SqlError

# Dashboards send a few KB; anything far larger is abuse, not a query.
MAX_QUERY_CHARS = 100_000
# Parenthesis nesting beyond this is refused before sqlglot recurses into it.
MAX_NESTING = 64


def _nesting(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return deepest


PLACEHOLDER_PREFIX = "__p"


def _number_placeholders(text: str) -> str:
    """`?` → `:__p0`, `:__p1`… in textual order (sqlglot's tree order is not textual).

    Positions come from the tokenizer, so a `?` inside a string or comment is untouched.
    """
    if "?" not in text and "TIMESTAMPDIFF" not in text.upper():
        return text
    tokens = sqlglot.Dialect.get_or_raise("druid").tokenize(text)
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
        raise SqlError(f"The query is longer than {MAX_QUERY_CHARS} characters")
    if _nesting(text) > MAX_NESTING:  # over-counts parentheses in strings: errs on refusing
        raise SqlError(f"The query nests deeper than {MAX_NESTING} levels")
    try:
        numbered = _number_placeholders(text)
        statements = [s for s in sqlglot.parse(numbered, read="druid") if s is not None]
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
    except Exception as error:  # noqa: BLE001 - sqlglot raises others on odd input; never a 500
        raise SqlError(f"Syntax error: {type(error).__name__}") from None
    if len(statements) != 1:
        raise SqlError("Only one statement is allowed")
    return _unit_arguments(statements[0])


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
