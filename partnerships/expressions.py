"""The attribute expression language of assertion attributes (asserting party) and attribute mapping (relying party).

An expression is a template: literal text with ``#{…}`` parts, such as ``#{attr["last"]}, #{attr["first"]}``. Inside
the braces is the JUEL subset the reference documents (``attr["x"]``, ``session_attr["x"]``, quoted strings, ``==``,
``!=``, ``cond ? a : b``, ``DELETE``) plus parentheses, ``&&``, ``||`` and ``!``. The full grammar, the semantics and
the error messages are in ``docs/expressions.md``.

The text goes through a tokenizer, a recursive-descent parser that builds an immutable AST, and an evaluator that
walks it; nothing is ever handed to ``eval``. ``compile_expression`` parses once and returns an ``Expression`` that
the runtime evaluates for every assertion and the console evaluates for its "test against a user" preview.

Contract:

* A bad expression raises ``ExpressionSyntaxError`` at compile time, with a 0-based ``position`` (plus ``line`` and
  ``column``) and a message in plain words for the console to show next to the field.
* Evaluation never raises because of data: a missing attribute evaluates to the blank value.
* An attribute is a list of strings. A template that is exactly one ``#{…}`` passes every value through; in text
  (literal text or several ``#{…}`` parts) the values are joined with a comma, as the reference's HTTP-header
  delivery does; ``==`` is true when any value on the left equals any value on the right.

This module imports nothing from Django so the runtime, the console and the CLI can share it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "DELETE",
    "MAX_EXPRESSION_LENGTH",
    "MAX_NESTING_DEPTH",
    "MULTI_VALUE_SEPARATOR",
    "AttributeRef",
    "Comparison",
    "Conditional",
    "Delete",
    "EvaluationResult",
    "Expression",
    "ExpressionSyntaxError",
    "Interpolation",
    "Logical",
    "Not",
    "StringLiteral",
    "Template",
    "Text",
    "compile_expression",
    "evaluate_expression",
    "unparse",
]

MAX_EXPRESSION_LENGTH = 4096
"""Longest accepted expression, in characters. An attribute value field never needs more."""

MAX_NESTING_DEPTH = 50
"""Deepest accepted nesting of parentheses, ``!`` and ``? :``; keeps parser and evaluator recursion bounded."""

MULTI_VALUE_SEPARATOR = ","
"""Joins the values of a multi-valued attribute when it is used as text (the reference's HTTP-header rule)."""

STORES = ("attr", "session_attr")
"""The two attribute sources: the user store and the session store. Always written in lower case."""


class _DeleteSentinel:
    """The value of an expression that removes its attribute (the ``DELETE`` keyword)."""

    _instance: _DeleteSentinel | None = None

    def __new__(cls) -> _DeleteSentinel:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DELETE"

    def __reduce__(self) -> str:
        return "DELETE"


DELETE = _DeleteSentinel()


# --------------------------------------------------------------------------------------------------------------------
# Errors


def _line_column(source: str, position: int) -> tuple[int, int]:
    """1-based line and column of ``position``; ``\\n``, ``\\r\\n`` and a lone ``\\r`` each end a line."""
    line, line_start = 1, 0
    for i in range(min(position, len(source))):
        char = source[i]
        if char == "\n" or (char == "\r" and source[i + 1 : i + 2] != "\n"):
            line += 1
            line_start = i + 1
    return line, position - line_start + 1


class ExpressionSyntaxError(ValueError):
    """An expression that cannot be compiled.

    ``message`` is the bare sentence; ``str(error)`` adds "at position N" (0-based), the line and column when the
    expression spans several lines, and a hint when one helps. The console shows ``str(error)`` at the field.
    """

    def __init__(self, message: str, source: str, position: int, hint: str = "") -> None:
        self.message = message
        self.source = source
        self.position = position
        self.line, self.column = _line_column(source, position)
        self.multiline = "\n" in source or "\r" in source
        self.hint = hint
        text = f"{message} at position {position}"
        if self.multiline:
            text += f" (line {self.line}, column {self.column})"
        if hint:
            text += f". {hint}"
        super().__init__(text)


# --------------------------------------------------------------------------------------------------------------------
# Tokens


class TokenKind(Enum):
    STORE = "store"  # attr / session_attr
    DELETE = "DELETE"
    STRING = "string"
    LBRACKET = "["
    RBRACKET = "]"
    LPAREN = "("
    RPAREN = ")"
    QUESTION = "?"
    COLON = ":"
    EQ = "=="
    NE = "!="
    AND = "&&"
    OR = "||"
    NOT = "!"
    CLOSE = "}"


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # the source slice
    position: int
    value: str = ""  # the decoded string of a STRING token, the store name of a STORE token


_PUNCTUATION = {
    "==": TokenKind.EQ,
    "!=": TokenKind.NE,
    "&&": TokenKind.AND,
    "||": TokenKind.OR,
    "[": TokenKind.LBRACKET,
    "]": TokenKind.RBRACKET,
    "(": TokenKind.LPAREN,
    ")": TokenKind.RPAREN,
    "?": TokenKind.QUESTION,
    ":": TokenKind.COLON,
    "!": TokenKind.NOT,
    "}": TokenKind.CLOSE,
}

_WORD_OPERATORS = {"eq": "==", "ne": "!=", "and": "&&", "or": "||", "not": "!"}

_UNSUPPORTED_WORDS = {
    "empty": "Compare with an empty string instead, as in attr[\"phone\"] == ''",
    "true": "Quote it and compare, as in attr[\"enabled\"] == 'true'",
    "false": "Quote it and compare, as in attr[\"enabled\"] == 'false'",
    "null": "A missing attribute is the empty string: compare with ''",
    "lt": "Only == and != comparisons are supported",
    "gt": "Only == and != comparisons are supported",
    "le": "Only == and != comparisons are supported",
    "ge": "Only == and != comparisons are supported",
    "div": "Arithmetic is not supported",
    "mod": "Arithmetic is not supported",
    "instanceof": "Only == and != comparisons are supported",
    "function": "Functions are not supported",
}

_CHARACTER_HINTS = {
    "+": (
        "`+` is not supported",
        'To join values, write the parts side by side with the text between them: #{attr["a"]} #{attr["b"]}',
    ),
    "-": ("Arithmetic is not supported", ""),
    "*": ("Arithmetic is not supported", ""),
    "/": ("Arithmetic is not supported", ""),
    "%": ("Arithmetic is not supported", ""),
    "=": ("Use `==` to compare, not `=`", ""),
    "&": ("Use `&&` for \u201cand\u201d, not `&`", ""),
    "|": ("Use `||` for \u201cor\u201d, not `|`", ""),
    "<": ("Only `==` and `!=` comparisons are supported", ""),
    ">": ("Only `==` and `!=` comparisons are supported", ""),
    ".": ("Write attribute references with brackets and quotes", 'For example attr["mail"]'),
    ",": ("A comma cannot appear inside `#{…}`", 'Put it in the text between two parts: #{attr["a"]},#{attr["b"]}'),
    ";": ("A semicolon cannot appear inside `#{…}`", ""),
    "{": ("Unexpected `{` inside an expression", ""),
    "`": ("Use ' or \" to quote strings, not `", ""),
}

_ESCAPABLE = {"\\", "'", '"'}


def _describe_char(char: str) -> str:
    if char.isprintable() and not char.isspace():
        return f"`{char}`"
    return f"U+{ord(char):04X}"


class _Scanner:
    """Splits the inside of one ``#{…}`` into tokens, up to and including its closing ``}``."""

    def __init__(self, source: str, opening: int) -> None:
        self.source = source
        self.opening = opening  # position of the '#' of "#{"
        self.pos = opening + 2

    def _unclosed(self) -> ExpressionSyntaxError:
        return ExpressionSyntaxError(
            "Missing the closing `}` of the `#{` that starts",
            self.source,
            self.opening,
        )

    def _error(self, message: str, position: int, hint: str = "") -> ExpressionSyntaxError:
        # When the stray character is really text after a `#{` that was never closed (no `}` follows, or another
        # `#{` comes before the next `}`), say that instead.
        next_close = self.source.find("}", position)
        next_open = _next_opening(self.source, position)
        if next_close < 0 or 0 <= next_open < next_close:
            return self._unclosed()
        return ExpressionSyntaxError(message, self.source, position, hint)

    def tokens(self) -> list[Token]:
        source, result = self.source, []
        while True:
            while self.pos < len(source) and source[self.pos].isspace():
                self.pos += 1
            if self.pos >= len(source):
                raise self._unclosed()
            start, char = self.pos, source[self.pos]
            if char in ("'", '"'):
                result.append(self._string(char))
                continue
            if char.isalpha() or char == "_":
                result.append(self._word())
                continue
            two = source[start : start + 2]
            if len(two) == 2 and two in _PUNCTUATION:
                self.pos += 2
                result.append(Token(_PUNCTUATION[two], two, start))
                continue
            if char in _PUNCTUATION:
                self.pos += 1
                token = Token(_PUNCTUATION[char], char, start)
                result.append(token)
                if token.kind is TokenKind.CLOSE:
                    return result
                continue
            if two in ("#{", "${"):
                raise ExpressionSyntaxError(
                    f"`{two}` cannot appear inside another expression",
                    source,
                    start,
                    "Close the previous `#{` with `}` first",
                )
            if char.isdigit():
                end = start
                while end < len(source) and (source[end].isdigit() or source[end] == "."):
                    end += 1
                number = source[start:end]
                raise self._error("Numbers must be quoted", start, f"Write '{number}' instead of {number}")
            message, hint = _CHARACTER_HINTS.get(char, (f"Unexpected character {_describe_char(char)}", ""))
            raise self._error(message, start, hint)

    def _string(self, quote: str) -> Token:
        source, start = self.source, self.pos
        i, chars = start + 1, []
        while i < len(source):
            char = source[i]
            if char == quote:
                self.pos = i + 1
                return Token(TokenKind.STRING, source[start : i + 1], start, "".join(chars))
            if char == "\\":
                if i + 1 >= len(source):
                    break
                escaped = source[i + 1]
                if escaped not in _ESCAPABLE:
                    raise ExpressionSyntaxError(
                        f"Unknown escape `\\{escaped}` in a string",
                        source,
                        i,
                        "Only \\\\, \\' and \\\" may follow a backslash; write \\\\ for a backslash",
                    )
                chars.append(escaped)
                i += 2
                continue
            chars.append(char)
            i += 1
        raise ExpressionSyntaxError(f"Missing the closing `{quote}` of the string that starts", source, start)

    def _word(self) -> Token:
        source, start = self.source, self.pos
        end = start
        while end < len(source) and (source[end].isalnum() or source[end] == "_"):
            end += 1
        self.pos = end
        word = source[start:end]
        if word in STORES:
            return Token(TokenKind.STORE, word, start, word)
        if word == "DELETE":
            return Token(TokenKind.DELETE, word, start)
        lowered = word.lower()
        if lowered in STORES:
            raise ExpressionSyntaxError(f"`{word}` must be written in lower case: `{lowered}`", source, start)
        if lowered == "delete":
            raise ExpressionSyntaxError(f"`{word}` must be written in capitals: `DELETE`", source, start)
        if lowered in _WORD_OPERATORS:
            raise self._error(f"`{word}` is not supported; use `{_WORD_OPERATORS[lowered]}`", start)
        if lowered in _UNSUPPORTED_WORDS:
            raise self._error(f"`{word}` is not supported", start, _UNSUPPORTED_WORDS[lowered])
        raise self._error(
            f"Unknown name `{word}`",
            start,
            f'An attribute is written attr["{word}"] or session_attr["{word}"], and text is quoted: \'{word}\'',
        )


# --------------------------------------------------------------------------------------------------------------------
# AST. Nodes are immutable and compare by structure; positions are kept for messages but ignored by ==.


@dataclass(frozen=True, slots=True)
class AttributeRef:
    """``attr["name"]`` (user store) or ``session_attr["name"]`` (session store)."""

    store: str
    name: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class StringLiteral:
    value: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Delete:
    """The ``DELETE`` keyword, or a ``'DELETE'`` literal where it is the result (``quoted``)."""

    quoted: bool = False
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Comparison:
    operator: str  # "==" or "!="
    left: Node
    right: Node
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Logical:
    """``a && b && c`` or ``a || b``: one node per run of the same operator, evaluated left to right, short-circuit."""

    operator: str  # "&&" or "||"
    operands: tuple[Node, ...]
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Conditional:
    condition: Node
    if_true: Node
    if_false: Node
    position: int = field(default=0, compare=False)


Node = AttributeRef | StringLiteral | Delete | Comparison | Not | Logical | Conditional


@dataclass(frozen=True, slots=True)
class Text:
    """Literal text between ``#{…}`` parts, kept verbatim (spaces included: the reference counts them)."""

    value: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Interpolation:
    """One ``#{…}`` part of a template."""

    expression: Node
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Template:
    parts: tuple[Text | Interpolation, ...]

    @property
    def is_single(self) -> bool:
        """Exactly one ``#{…}`` and no text: the result keeps every value and may be DELETE."""
        return len(self.parts) == 1 and isinstance(self.parts[0], Interpolation)


def _children(node: Node | Template | Text | Interpolation) -> tuple[Any, ...]:
    match node:
        case Template(parts=parts):
            return parts
        case Interpolation(expression=expression):
            return (expression,)
        case Comparison(left=left, right=right):
            return (left, right)
        case Not(operand=operand):
            return (operand,)
        case Logical(operands=operands):
            return operands
        case Conditional(condition=condition, if_true=if_true, if_false=if_false):
            return (condition, if_true, if_false)
    return ()


def _walk(node: Any) -> Iterator[Any]:
    """Every node, in source order (pre-order)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(_children(current)))


# --------------------------------------------------------------------------------------------------------------------
# Parser


def _describe(token: Token) -> str:
    if token.kind is TokenKind.CLOSE:
        return "`}`"
    if token.kind is TokenKind.STRING:
        shown = token.text if len(token.text) <= 30 else token.text[:27] + "…"
        return f"`{shown}`"
    return f"`{token.text}`"


_VALUE_EXPECTED = 'a value (attr["…"], session_attr["…"], a quoted string or DELETE)'


class _Parser:
    """Recursive descent over the tokens of one ``#{…}``; see the EBNF in docs/expressions.md."""

    def __init__(self, source: str, tokens: list[Token]) -> None:
        self.source = source
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def _peek(self) -> Token:
        return self.tokens[self.index]

    def _advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not TokenKind.CLOSE:
            self.index += 1
        return token

    def _fail(self, message: str, token: Token, hint: str = "") -> ExpressionSyntaxError:
        return ExpressionSyntaxError(message, self.source, token.position, hint)

    def _enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING_DEPTH:
            raise self._fail(
                f"The expression is nested too deeply (more than {MAX_NESTING_DEPTH} levels of parentheses, `!` or `? :`)",
                token,
            )

    def parse(self) -> Node:
        node = self._conditional()
        token = self._peek()
        if token.kind is not TokenKind.CLOSE:
            hint = ""
            if token.kind is TokenKind.COLON:
                hint = "A `:` needs a `?` before it: condition ? value : other value"
            elif token.kind in (TokenKind.STRING, TokenKind.STORE, TokenKind.DELETE, TokenKind.LPAREN):
                hint = 'To join values, close the braces and start a new part: #{attr["a"]} #{attr["b"]}'
            raise self._fail(f"Expected `}}` to end the expression, found {_describe(token)}", token, hint)
        return node

    def _conditional(self) -> Node:
        condition = self._or()
        if self._peek().kind is not TokenKind.QUESTION:
            return condition
        question = self._advance()
        self._enter(question)
        if_true = self._conditional()
        colon = self._peek()
        if colon.kind is not TokenKind.COLON:
            raise self._fail(
                f"Expected `:` to complete the `?` at position {question.position}, found {_describe(colon)}",
                colon,
                "A conditional is written condition ? value : other value",
            )
        self._advance()
        if_false = self._conditional()
        self.depth -= 1
        return Conditional(condition, if_true, if_false, _position(condition))

    def _or(self) -> Node:
        operands = [self._and()]
        while self._peek().kind is TokenKind.OR:
            self._advance()
            operands.append(self._and())
        if len(operands) == 1:
            return operands[0]
        return Logical("||", tuple(operands), _position(operands[0]))

    def _and(self) -> Node:
        operands = [self._equality()]
        while self._peek().kind is TokenKind.AND:
            self._advance()
            operands.append(self._equality())
        if len(operands) == 1:
            return operands[0]
        return Logical("&&", tuple(operands), _position(operands[0]))

    def _equality(self) -> Node:
        left = self._unary()
        if self._peek().kind not in (TokenKind.EQ, TokenKind.NE):
            return left
        operator = self._advance()
        right = self._unary()
        if self._peek().kind in (TokenKind.EQ, TokenKind.NE):
            raise self._fail(
                "Comparisons cannot be chained",
                self._peek(),
                "Combine them with && or ||, as in attr[\"a\"] == 'x' && attr[\"b\"] == 'y'",
            )
        return Comparison(operator.text, left, right, _position(left))

    def _unary(self) -> Node:
        token = self._peek()
        if token.kind is not TokenKind.NOT:
            return self._primary()
        self._advance()
        self._enter(token)
        operand = self._unary()
        self.depth -= 1
        return Not(operand, token.position)

    def _primary(self) -> Node:
        token = self._advance()
        match token.kind:
            case TokenKind.STORE:
                return self._reference(token)
            case TokenKind.STRING:
                return StringLiteral(token.value, token.position)
            case TokenKind.DELETE:
                return Delete(False, token.position)
            case TokenKind.LPAREN:
                self._enter(token)
                inner = self._conditional()
                closing = self._peek()
                if closing.kind is not TokenKind.RPAREN:
                    raise self._fail(
                        f"Expected `)` to close the `(` at position {token.position}, found {_describe(closing)}",
                        closing,
                    )
                self._advance()
                self.depth -= 1
                return inner
        raise self._fail(f"Expected {_VALUE_EXPECTED}, found {_describe(token)}", token)

    def _reference(self, store: Token) -> AttributeRef:
        bracket = self._advance()
        if bracket.kind is not TokenKind.LBRACKET:
            raise self._fail(f"Expected `[` after `{store.text}`", bracket, f'Write {store.text}["name"]')
        name = self._advance()
        if name.kind is not TokenKind.STRING:
            raise self._fail(f"Expected the attribute name in quotes after `{store.text}[`", name, f'Write {store.text}["name"]')
        if not name.value.strip():
            raise self._fail("The attribute name is empty", name)
        closing = self._advance()
        if closing.kind is not TokenKind.RBRACKET:
            raise self._fail("Expected `]` after the attribute name", closing)
        return AttributeRef(store.value, name.value, store.position)


def _position(node: Node) -> int:
    return node.position


def _place_delete(node: Node, source: str, result: bool, in_text: bool) -> Node:
    """Turn a ``'DELETE'`` literal that is the result into DELETE; reject a bare DELETE anywhere else.

    The result positions are the whole ``#{…}`` of a single-part template and, recursively, both branches of a
    conditional in a result position. Elsewhere (a comparison, a condition, ``!``, ``&&``/``||``, or a template with
    text) removing the attribute means nothing, so a bare DELETE there is a mistake worth reporting at the field.
    """
    match node:
        case StringLiteral(value="DELETE") if result:
            return Delete(True, node.position)
        case Delete() if not result:
            if in_text:
                message = "`DELETE` removes the whole attribute, so it cannot be combined with text or other `#{…}` parts"
                hint = "Make the field a single #{…} with nothing around it, not even spaces"
            else:
                message = "`DELETE` can only be the result of the expression or of a `? :` branch"
                hint = "To compare with the text DELETE, quote it: 'DELETE'"
            raise ExpressionSyntaxError(message, source, node.position, hint)
        case Conditional(condition=condition, if_true=if_true, if_false=if_false, position=position):
            return Conditional(
                _place_delete(condition, source, False, in_text),
                _place_delete(if_true, source, result, in_text),
                _place_delete(if_false, source, result, in_text),
                position,
            )
        case Comparison(operator=operator, left=left, right=right, position=position):
            return Comparison(
                operator, _place_delete(left, source, False, in_text), _place_delete(right, source, False, in_text), position
            )
        case Not(operand=operand, position=position):
            return Not(_place_delete(operand, source, False, in_text), position)
        case Logical(operator=operator, operands=operands, position=position):
            return Logical(operator, tuple(_place_delete(o, source, False, in_text) for o in operands), position)
    return node


def _parse_template(source: str) -> Template:
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionSyntaxError(
            f"The expression is too long: {len(source)} characters, the limit is {MAX_EXPRESSION_LENGTH}",
            source,
            MAX_EXPRESSION_LENGTH,
        )
    parts: list[Text | Interpolation] = []
    pos = 0
    while pos < len(source):
        opening = _next_opening(source, pos)
        if opening < 0:
            parts.append(Text(source[pos:], pos))
            break
        if source[opening] == "$":
            raise ExpressionSyntaxError(
                "`${…}` is not supported; write expressions as `#{…}`",
                source,
                opening,
                "To keep the characters ${ as text, write #{'${'}",
            )
        if opening > pos:
            parts.append(Text(source[pos:opening], pos))
        scanner = _Scanner(source, opening)
        tokens = scanner.tokens()
        if len(tokens) == 1:
            raise ExpressionSyntaxError(
                "Empty `#{}`",
                source,
                opening,
                'Write an expression between the braces, such as #{attr["mail"]}',
            )
        parts.append(Interpolation(_Parser(source, tokens).parse(), opening))
        pos = scanner.pos
    single = len(parts) == 1 and isinstance(parts[0], Interpolation)
    placed = tuple(
        Interpolation(_place_delete(part.expression, source, single, not single), part.position)
        if isinstance(part, Interpolation)
        else part
        for part in parts
    )
    return Template(placed)


def _next_opening(source: str, start: int) -> int:
    """Position of the next ``#{`` or ``${``, or -1."""
    hash_at, dollar_at = source.find("#{", start), source.find("${", start)
    if hash_at < 0:
        return dollar_at
    if dollar_at < 0:
        return hash_at
    return min(hash_at, dollar_at)


# --------------------------------------------------------------------------------------------------------------------
# Printer


_PRECEDENCE = {Conditional: 0, Comparison: 3, Not: 4}
_LOGICAL_PRECEDENCE = {"||": 1, "&&": 2}
_ATOM = 5


def _precedence(node: Node) -> int:
    if isinstance(node, Logical):
        return _LOGICAL_PRECEDENCE[node.operator]
    return _PRECEDENCE.get(type(node), _ATOM)


def _quote(value: str, quote: str) -> str:
    return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def _unparse_node(node: Node, minimum: int = 0) -> str:
    match node:
        case AttributeRef(store=store, name=name):
            text = store + "[" + _quote(name, '"') + "]"
        case StringLiteral(value=value):
            text = _quote(value, "'")
        case Delete(quoted=quoted):
            text = "'DELETE'" if quoted else "DELETE"
        case Comparison(operator=operator, left=left, right=right):
            text = f"{_unparse_node(left, 4)} {operator} {_unparse_node(right, 4)}"
        case Not(operand=operand):
            text = "!" + _unparse_node(operand, 4)
        case Logical(operator=operator, operands=operands):
            inner = _LOGICAL_PRECEDENCE[operator] + 1
            text = f" {operator} ".join(_unparse_node(operand, inner) for operand in operands)
        case Conditional(condition=condition, if_true=if_true, if_false=if_false):
            text = f"{_unparse_node(condition, 1)} ? {_unparse_node(if_true)} : {_unparse_node(if_false)}"
        case _:
            raise TypeError(f"not an expression node: {node!r}")
    return f"({text})" if _precedence(node) < minimum else text


def _unparse_text(value: str) -> str:
    # The parser never yields text holding "#{" or "${"; a hand-built Text that does is printed as string literals.
    out, pos = [], 0
    while True:
        opening = _next_opening(value, pos)
        if opening < 0:
            out.append(value[pos:])
            return "".join(out)
        out.append(value[pos:opening])
        out.append("#{" + _quote(value[opening : opening + 2], "'") + "}")
        pos = opening + 2


def unparse(node: Template | Node) -> str:
    """Canonical source text of an AST: ``compile_expression(unparse(ast)).template == ast`` for any parsed AST.

    Canonical form: attribute names in double quotes, literals in single quotes, one space around binary operators,
    and parentheses only where precedence needs them.
    """
    if isinstance(node, Template):
        return "".join(
            _unparse_text(part.value) if isinstance(part, Text) else "#{" + _unparse_node(part.expression) + "}"
            for part in node.parts
        )
    return _unparse_node(node)


# --------------------------------------------------------------------------------------------------------------------
# Evaluation

# A runtime value is a tuple of strings (an attribute's values, or one literal), a bool (comparisons and logic), or
# DELETE (only ever as the result of a single-part template; the parser guarantees it goes nowhere else).
_Value = tuple[str, ...] | bool | _DeleteSentinel


def _one_value(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bytes | bytearray):
        return bytes(raw).decode("utf-8", "replace")
    try:
        return str(raw)
    except Exception:  # evaluation never fails on data; an unprintable value is blank
        return ""


def _values(raw: Any) -> tuple[str, ...]:
    """An attribute's values: None → none, a string → one, any other iterable → each of its items (None dropped)."""
    if raw is None:
        return ()
    if isinstance(raw, str | bytes | bytearray):
        return (_one_value(raw),)  # type: ignore[return-value]
    try:
        items = list(raw)
    except TypeError:
        return (_one_value(raw) or "",)
    return tuple(value for value in map(_one_value, items) if value is not None)


class _Store:
    """Looks up attribute values in one mapping, exactly first and then, unless case-sensitive, ignoring case."""

    def __init__(self, mapping: Mapping[str, Any] | None, case_sensitive: bool) -> None:
        self.mapping = mapping if mapping is not None else {}
        self.case_sensitive = case_sensitive
        self.folded: dict[str, list[str]] | None = None

    def get(self, name: str) -> tuple[str, ...]:
        try:
            if name in self.mapping:
                return _values(self.mapping[name])
            if self.case_sensitive:
                return ()
            if self.folded is None:
                self.folded = {}
                for key in self.mapping:
                    if isinstance(key, str):
                        self.folded.setdefault(key.casefold(), []).append(key)
            values: list[str] = []
            for key in self.folded.get(name.casefold(), ()):
                values.extend(_values(self.mapping[key]))
            return tuple(values)
        except Exception:  # a misbehaving mapping is treated as a missing attribute
            return ()


def _truth(value: _Value) -> bool:
    """JUEL's coercion to boolean: a string is true when it is "true" in any case; a list when any value is."""
    if isinstance(value, bool):
        return value
    if isinstance(value, tuple):
        return any(item.lower() == "true" for item in value)
    return False


def _as_text(value: _Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return MULTI_VALUE_SEPARATOR.join(value)
    return ""


def _equal(left: _Value, right: _Value) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return _truth(left) == _truth(right)
    left_values = left or ("",)  # a missing attribute is the blank value
    right_values = right or ("",)
    assert isinstance(left_values, tuple) and isinstance(right_values, tuple)
    return not set(left_values).isdisjoint(right_values)


def _evaluate(node: Node, stores: dict[str, _Store]) -> _Value:
    match node:
        case AttributeRef(store=store, name=name):
            return stores[store].get(name)
        case StringLiteral(value=value):
            return (value,)
        case Delete():
            return DELETE
        case Comparison(operator=operator, left=left, right=right):
            equal = _equal(_evaluate(left, stores), _evaluate(right, stores))
            return equal if operator == "==" else not equal
        case Not(operand=operand):
            return not _truth(_evaluate(operand, stores))
        case Logical(operator="&&", operands=operands):
            return all(_truth(_evaluate(operand, stores)) for operand in operands)
        case Logical(operands=operands):
            return any(_truth(_evaluate(operand, stores)) for operand in operands)
        case Conditional(condition=condition, if_true=if_true, if_false=if_false):
            branch = if_true if _truth(_evaluate(condition, stores)) else if_false
            return _evaluate(branch, stores)
    raise TypeError(f"not an expression node: {node!r}")


@dataclass(frozen=True)
class EvaluationResult:
    """What an expression gives for one user.

    ``values`` is the attribute's list of values (never empty unless ``deleted``): every value of a passed-through
    multi-valued attribute, or one string. ``deleted`` means the attribute is to be removed from the assertion or
    the application attributes. ``value`` is the single-string view: DELETE, or the values joined with a comma.
    """

    values: list[str]
    deleted: bool = False

    @property
    def value(self) -> str | _DeleteSentinel:
        return DELETE if self.deleted else MULTI_VALUE_SEPARATOR.join(self.values)


@dataclass(frozen=True, eq=False)
class Expression:
    """A compiled expression. Immutable and thread-safe: compile once, evaluate for every assertion."""

    source: str
    template: Template

    def evaluate(
        self,
        attrs: Mapping[str, Any] | None = None,
        session_attrs: Mapping[str, Any] | None = None,
        *,
        case_sensitive_names: bool = False,
    ) -> EvaluationResult:
        """Evaluate for one user: ``attrs`` is the user store, ``session_attrs`` the session store.

        Each mapping holds attribute name → a string or a list of strings (None and missing mean no value).
        Names are matched ignoring case, as the asserting-party chapter says, unless ``case_sensitive_names`` (the
        relying party's attribute mapping, where names must match the asserting party exactly).
        """
        stores = {
            "attr": _Store(attrs, case_sensitive_names),
            "session_attr": _Store(session_attrs, case_sensitive_names),
        }
        parts = self.template.parts
        if self.template.is_single:
            value = _evaluate(parts[0].expression, stores)  # type: ignore[union-attr]
            if value is DELETE:
                return EvaluationResult([], deleted=True)
            if isinstance(value, tuple):
                return EvaluationResult(list(value) or [""])
            return EvaluationResult([_as_text(value)])
        text = "".join(part.value if isinstance(part, Text) else _as_text(_evaluate(part.expression, stores)) for part in parts)
        return EvaluationResult([text])

    def references(self) -> tuple[AttributeRef, ...]:
        """The attributes the expression reads, in source order, each (store, name) once; ``position`` is the first use."""
        seen: set[tuple[str, str]] = set()
        found = []
        for node in _walk(self.template):
            if isinstance(node, AttributeRef) and (node.store, node.name) not in seen:
                seen.add((node.store, node.name))
                found.append(node)
        return tuple(found)

    def unparse(self) -> str:
        """The canonical text of this expression (see ``unparse``)."""
        return unparse(self.template)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


@functools.lru_cache(maxsize=1024)
def compile_expression(text: str) -> Expression:
    """Parse ``text`` into an ``Expression``, or raise ``ExpressionSyntaxError``. Results are cached by text."""
    if not isinstance(text, str):
        raise TypeError(f"an expression is a string, not {type(text).__name__}")
    return Expression(text, _parse_template(text))


def evaluate_expression(
    text: str,
    attrs: Mapping[str, Any] | None = None,
    session_attrs: Mapping[str, Any] | None = None,
    *,
    case_sensitive_names: bool = False,
) -> EvaluationResult:
    """Compile (cached) and evaluate in one call: for the console's preview and for tests."""
    return compile_expression(text).evaluate(attrs, session_attrs, case_sensitive_names=case_sensitive_names)
