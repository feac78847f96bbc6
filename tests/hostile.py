"""A corpus of hostile strings: what a model, a server, a file or a title may carry.

Shared by the tests of every place text meets the terminal (app widgets, one-shot
output, --list, --search, exports, notifications)."""

from __future__ import annotations

ESC = "\x1b"

CORPUS: dict[str, str] = {
    "osc title (BEL)": f"{ESC}]0;pwned title\x07after",
    "osc title (ST)": f"{ESC}]2;pwned{ESC}\\after",
    "osc 52 clipboard": f"{ESC}]52;c;cm0gLXJmIH4K\x07",
    "osc 8 hyperlink": f"{ESC}]8;;http://evil.example/{ESC}\\click{ESC}]8;;{ESC}\\",
    "csi clear screen": f"{ESC}[2J{ESC}[H",
    "csi colour": f"{ESC}[31mred{ESC}[0m",
    "csi cursor up": f"line{ESC}[1A{ESC}[2Koverwritten",
    "csi private mode": f"{ESC}[?1049h{ESC}[?25l",
    "dcs": f"{ESC}P1$r0m{ESC}\\",
    "apc": f"{ESC}_Gf=100;AAAA{ESC}\\",
    "sos/pm": f"{ESC}Xsos{ESC}\\{ESC}^pm{ESC}\\",
    "two-char escapes": f"{ESC}c{ESC}7{ESC}8{ESC}=",
    "8-bit csi": "\x9b2J",
    "8-bit osc": "\x9d0;eight-bit title\x9c",
    "8-bit dcs": "\x90qsixel\x9c",
    "unterminated osc": f"{ESC}]0;never ends",
    "lone esc": f"{ESC}",
    "bell and backspace": "ding\x07\x08\x08\x08xx",
    "carriage return": "safe text\rEVIL",
    "null and del": "a\x00b\x7fc",
    "vertical tab and form feed": "a\x0bb\x0cc",
    "c1 next line": "a\x85b",
    "markup close tag": "[/bold] not markup",
    "markup open tag": "[bold red]loud[/]",
    "markup bad": "[x=1=2]bad",
    "markup link": "[link=http://evil.example]click[/link]",
    "textual variable": "$primary $text [@click=app.quit]quit[/]",
    "rich emoji code": ":smiley: :warning:",
    "lone high surrogate": "before \ud800 after",
    "lone low surrogate": "\udfff",
    "bidi override": "abc\u202eevil\u202c def",
    "bidi isolate": "x\u2067y\u2069z",
    "zero width joiners": "a\u200d\u200db",
    "combining marks": "e" + "\u0301" * 50,
    "very long line": "A" * 20000,
    "many lines": "line\n" * 2000,
    "tabs and newlines": "a\tb\nc",
    "non-latin": "日本語のテキスト — русский — عربى",
    "emoji": "👩‍👩‍👧‍👦 🏳️‍🌈",
    "backslashes and quotes": 'C:\\path\\"quoted"\\',
    "toml lookalike": '"""\n[[messages]]\nrole = "system"\n"""',
    "html": "<script>alert(1)</script>",
}

# characters a terminal acts on: C0 (but newline and tab), DEL, C1
TERMINAL_CONTROLS = {chr(c) for c in range(0x20) if chr(c) not in "\n\t"} | {
    chr(c) for c in range(0x7F, 0xA0)
}


def controls_in(text: str) -> set[str]:
    return {c for c in text if c in TERMINAL_CONTROLS}
