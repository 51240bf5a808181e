"""An in-memory fake of the Telegram Bot API, for the merchant bot's tests and the dev stack.

`FakeTelegram` is an aiohttp server on 127.0.0.1 that answers a bot's Bot API calls the way
api.telegram.org does (`POST /bot<token>/<method>`, form-encoded, multipart, JSON or query
parameters; `{"ok": true, "result": ...}` or `{"ok": false, "error_code": N, "description":
...}` with the same HTTP status), and lets a test play the users: send messages, press inline
buttons, block the bot, and read every chat as a user would see it. Point an aiogram 3 bot at it:

    async with FakeTelegram() as tg:
        bot = Bot("123456:TEST", session=AiohttpSession(api=TelegramAPIServer.from_base(tg.url)))
        polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False))
        sent = tg.user_message(42, "/start ref_1")
        reply = await tg.wait_for_bot_message(42, after=sent)
        tg.press(42, reply.message_id, reply.callback_data[0])

What it fakes: private chats only (chat id == user id); long polling (`getUpdates` with
`offset`, `limit`, `timeout` and `allowed_updates`, which persists across calls as in
Telegram); `getMe`, `deleteWebhook`, `setMyCommands` / `getMyCommands` / `deleteMyCommands`,
`sendMessage`, `sendChatAction`, `editMessageText`, `editMessageReplyMarkup`, `deleteMessage`,
`deleteMessages`, `answerCallbackQuery` and a minimal `getChat`. Message ids count per chat
and are shared by the bot's and the user's messages. Telegram's own checks that bots trip on
are kept: "chat not found" for a chat no user ever wrote from, "bot was blocked by the user"
(403), flood control (429 with `retry_after`, on demand via `flood()`), "message is not
modified", "message to edit/delete not found", a callback query answered twice or never
issued, callback data over 64 bytes, empty or over-long text, and HTML (`parse_mode="HTML"`)
with unsupported or unbalanced tags ("can't parse entities" - e.g. a merchant name like
`<Ali>` interpolated unescaped). An edit without `reply_markup` removes the inline keyboard,
as in Telegram. Blocking or unblocking the bot queues a `my_chat_member` update.

What it does not fake: groups, channels, inline mode, webhooks, files and media, payments,
MarkdownV2 parsing (such text is kept verbatim and not validated), returned `entities` for
formatted text, the 409 conflict of two concurrent `getUpdates`, real rate limits (flood
errors happen only when a test asks for them) and persistence (state lives in memory).

Out of process (the dev stack runs it, tests and the CLI drive it), a JSON control API lives
on the same server under `/control/` and `TelegramControl` is its synchronous client:

    python -m autopay_testing.telegram --host 127.0.0.1 --port 8081
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import itertools
import json
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx
from aiohttp import web


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Update types Telegram sends when `allowed_updates` was never given (or given empty).
DEFAULT_UPDATE_TYPES = _names(
    """
    message edited_message channel_post edited_channel_post business_connection
    business_message edited_business_message deleted_business_messages inline_query
    chosen_inline_result callback_query shipping_query pre_checkout_query
    purchased_paid_media poll poll_answer my_chat_member chat_join_request chat_boost
    removed_chat_boost
    """
)

MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
DEFAULT_BOT_ID = 1_000_000_001

# Parameters Telegram reads as plain strings; every other form value is JSON (numbers,
# booleans, objects like `reply_markup`), which is how aiogram and most clients encode them.
_TEXT_PARAMS = _names(
    """
    text caption parse_mode callback_query_id inline_message_id url description
    short_description name title query language_code business_connection_id
    message_effect_id secret_token emoji question explanation first_name last_name
    phone_number vcard payload start_parameter currency custom_title action ip_address
    address
    """
)


def _utf16_len(text: str) -> int:
    """Telegram measures text lengths and entity offsets in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _now() -> int:
    return int(time.time())


class ApiError(Exception):
    """An error answer of the Bot API: HTTP status `code` and `{"ok": false, ...}`."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad_request(what: str) -> ApiError:
    return ApiError(400, f"Bad Request: {what}")


# --- HTML parse mode ----------------------------------------------------------------------

_HTML_TAGS = _names(
    """
    b strong i em u ins s strike del span tg-spoiler a code pre blockquote tg-emoji
    """
)


class _TelegramHtml(HTMLParser):
    """Telegram's HTML subset: supported tags only, properly nested; yields the plain text."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        self._line_starts = [0]
        for index, char in enumerate(source):
            if char == "\n":
                self._line_starts.append(index + 1)
        self.parts: list[str] = []
        self.stack: list[str] = []
        self.error: str | None = None

    def _byte_offset(self) -> int:
        line, column = self.getpos()
        chars = self._line_starts[line - 1] + column
        return len(self._source[:chars].encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.error:
            return
        if tag not in _HTML_TAGS:
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._byte_offset()}'
        elif tag == "span" and dict(attrs).get("class") != "tg-spoiler":
            self.error = (
                f'Tag "span" must have class "tg-spoiler" at byte offset {self._byte_offset()}'
            )
        else:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.error:
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._byte_offset()}'

    def handle_endtag(self, tag: str) -> None:
        if self.error:
            return
        if not self.stack:
            self.error = f"Unexpected end tag at byte offset {self._byte_offset()}"
        elif self.stack[-1] != tag:
            self.error = (
                f"Unmatched end tag at byte offset {self._byte_offset()}, "
                f'expected "</{self.stack[-1]}>", found "</{tag}>"'
            )
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def parse_html(text: str) -> str:
    """The plain text of a `parse_mode="HTML"` message; `ApiError` as Telegram would answer."""
    parser = _TelegramHtml(text)
    parser.feed(text)
    parser.close()
    if parser.error is None and parser.stack:
        parser.error = f'Can\'t find end tag corresponding to start tag "{parser.stack[-1]}"'
    if parser.error is not None:
        raise _bad_request(f"can't parse entities: {parser.error}")
    return "".join(parser.parts)


# --- recorded state -----------------------------------------------------------------------


@dataclass
class FakeMessage:
    """A message of a chat as the user sees it (edits applied). Instances handed out by
    `FakeTelegram` are snapshots: they do not change when the bot edits the message later."""

    chat_id: int
    message_id: int
    from_bot: bool
    text: str | None
    """The text as displayed: for `parse_mode="HTML"`, without tags and with entities
    decoded (`raw_text` keeps what the bot sent)."""
    date: int
    raw_text: str | None = None
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None
    """The markup as sent: an inline keyboard, a reply keyboard, `remove_keyboard` or
    `force_reply` (only an inline keyboard stays attached to the message across edits)."""
    entities: list[dict[str, Any]] = field(default_factory=list)
    user_id: int | None = None
    """Who wrote a user message (the chat's user); None for the bot's messages."""
    reply_to_message_id: int | None = None
    edit_date: int | None = None
    edits: int = 0
    deleted: bool = False

    @property
    def inline_keyboard(self) -> list[list[dict[str, Any]]]:
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            return self.reply_markup["inline_keyboard"]
        return []

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The inline keyboard's buttons, row by row, flattened."""
        return [button for row in self.inline_keyboard for button in row]

    @property
    def button_texts(self) -> list[str]:
        return [button.get("text", "") for button in self.buttons]

    @property
    def callback_data(self) -> list[str]:
        """The callback data of the inline keyboard's buttons, in order."""
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]

    def callback_for(self, text: str) -> str:
        """The callback data of the inline button labelled `text` (exactly, or containing it)."""
        for exact in (True, False):
            for button in self.buttons:
                label = button.get("text", "")
                if "callback_data" in button and (label == text if exact else text in label):
                    return button["callback_data"]
        raise KeyError(f"no callback button {text!r} on message {self.message_id}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FakeMessage:
        return cls(**data)

    def describe(self) -> str:
        who = "bot" if self.from_bot else "user"
        line = f"#{self.message_id} {who}: {self.text!r}"
        if self.buttons:
            labels = " | ".join(
                f"{b.get('text')}={b.get('callback_data') or b.get('url') or '?'}"
                for b in self.buttons
            )
            line += f" [{labels}]"
        elif self.reply_markup:
            line += f" {json.dumps(self.reply_markup, ensure_ascii=False)}"
        if self.edits:
            line += f" (edited {self.edits}x)"
        if self.deleted:
            line += " (deleted)"
        return line


@dataclass
class ApiCall:
    """One Bot API request as the fake received and answered it."""

    method: str
    params: dict[str, Any]
    token: str
    ok: bool | None
    """None while the request is still being answered (a long poll waiting)."""
    error_code: int | None = None
    description: str | None = None
    at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AnsweredCallback:
    """An `answerCallbackQuery`, with the press it answered."""

    callback_query_id: str
    chat_id: int
    message_id: int
    data: str
    text: str | None = None
    show_alert: bool = False
    url: str | None = None
    cache_time: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Chat:
    id: int
    first_name: str = "Test"
    username: str | None = None
    language_code: str | None = "uz"
    blocked: bool = False
    seen: bool = False
    """A user wrote from this chat (so the bot may write to it)."""
    next_message_id: int = 1
    messages: dict[int, FakeMessage] = field(default_factory=dict)
    reply_keyboard: dict[str, Any] | None = None

    def take_message_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id

    def api(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.username:
            chat["username"] = self.username
        return chat

    def user(self, user_id: int | None = None) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": self.id if user_id is None else user_id,
            "is_bot": False,
            "first_name": self.first_name,
        }
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user


@dataclass
class _Press:
    chat_id: int
    message_id: int
    data: str
    answered: bool = False


def _decode_param(key: str, value: Any) -> Any:
    if isinstance(value, str) and key not in _TEXT_PARAMS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _int_param(params: dict[str, Any], key: str, default: int | None = None) -> int | None:
    value = params.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _bad_request(f"invalid {key} specified")
    try:
        return int(value)
    except ValueError:
        raise _bad_request(f"invalid {key} specified") from None


def _check_reply_markup(markup: Any, *, inline_only: bool) -> dict[str, Any] | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
            )
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise _bad_request("can't parse inline keyboard button: Text must be non-empty")
                actions = set(button) - {"text", "style", "icon_custom_emoji_id"}
                if not actions:
                    raise _bad_request(
                        "can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard"
                    )
                if "callback_data" in button:
                    data = button["callback_data"]
                    size = len(str(data).encode())
                    if not isinstance(data, str) or not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                        raise _bad_request("BUTTON_DATA_INVALID")
        return markup
    if inline_only:
        raise _bad_request("inline keyboard expected")
    if "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad_request(
                'field "keyboard" of the ReplyKeyboardMarkup should be an Array of Arrays'
            )
        return markup
    if markup.get("remove_keyboard") or markup.get("force_reply"):
        return markup
    raise _bad_request("can't parse reply keyboard markup JSON object")


# --- the server ---------------------------------------------------------------------------


class FakeTelegram:
    """The fake Bot API server. `port=0` picks a free port; `token`, when given, is the only
    token accepted (others get 401 Unauthorized), otherwise any token is (each is recorded in
    `calls()`). The bot user's id is the token's numeric prefix, as for real tokens."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        bot_username: str = "autopay_test_bot",
        bot_first_name: str = "AutoPay Test Bot",
    ) -> None:
        self.host = host
        self.port = 0
        self._requested_port = port
        self.token = token
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._changed = asyncio.Event()
        self._chats: dict[int, _Chat] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self._floods: dict[int | None, list[int]] = {}
        self._presses: dict[str, _Press] = {}
        self._answered: list[AnsweredCallback] = []
        self._calls: list[ApiCall] = []
        self._last_token: str | None = None
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.dropped_updates: list[dict[str, Any]] = []
        """Updates discarded unseen: their type was not in the bot's `allowed_updates`, or
        `deleteWebhook(drop_pending_updates=True)`."""
        self._handlers: dict[str, Callable[[dict[str, Any], str], Any]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "sendChatAction": self._send_chat_action,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "deleteMessages": self._delete_messages,
            "answerCallbackQuery": self._answer_callback_query,
            "getChat": self._get_chat,
        }
        self._handlers_lower = {name.lower(): name for name in self._handlers}

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL for `TelegramAPIServer.from_base(url)` (and `TelegramControl(url)`)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        self._add_control_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        self._closing = False
        return self

    async def stop(self) -> None:
        """Stop listening; a pending long poll answers with no updates."""
        self._closing = True
        self._notify()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _notify(self) -> None:
        """Wake everything waiting for a change (long polls, `wait_for_*`)."""
        self._changed.set()
        self._changed = asyncio.Event()

    # --- playing the users ----------------------------------------------------------------

    def add_chat(
        self,
        chat_id: int,
        first_name: str = "Test",
        language_code: str | None = "uz",
        username: str | None = None,
    ) -> None:
        """Make a private chat known (as if its user had started the bot) without a message."""
        chat = self._chat(chat_id)
        chat.first_name, chat.language_code, chat.username = first_name, language_code, username
        chat.seen = True

    def user_message(
        self,
        chat_id: int,
        text: str,
        user_id: int | None = None,
        first_name: str = "Test",
        language_code: str | None = "uz",
        username: str | None = None,
    ) -> int:
        """Queue a `message` update: the chat's user writes `text` (e.g. "/start ref_1").
        Returns the message's id. Text starting with "/" carries a `bot_command` entity. If the
        user had blocked the bot, this unblocks it first (Telegram lets no blocked bot receive
        messages), queueing the `my_chat_member` update as Telegram does."""
        chat = self._chat(chat_id)
        chat.first_name, chat.language_code = first_name, language_code
        if username is not None:
            chat.username = username
        chat.seen = True
        if chat.blocked:
            self.block(chat_id, False)
        entities: list[dict[str, Any]] = []
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            entities.append({"type": "bot_command", "offset": 0, "length": _utf16_len(command)})
        message = FakeMessage(
            chat_id=chat_id,
            message_id=chat.take_message_id(),
            from_bot=False,
            text=text,
            raw_text=text,
            date=_now(),
            entities=entities,
            user_id=chat_id if user_id is None else user_id,
        )
        chat.messages[message.message_id] = message
        self._enqueue("message", self._message_api(message))
        return message.message_id

    def press(
        self,
        chat_id: int,
        message_id: int,
        data: str,
        user_id: int | None = None,
        *,
        check_button: bool = True,
    ) -> str:
        """Queue a `callback_query` update: the user presses the inline button with callback
        `data` on the bot's message (which the query carries as it currently is). Returns
        the callback query id. `ValueError` if the message is not the bot's, is deleted or
        (unless `check_button=False`) has no such button."""
        chat = self._chats.get(chat_id)
        message = chat.messages.get(message_id) if chat else None
        if chat is None or message is None or message.deleted:
            raise ValueError(f"no message {message_id} in chat {chat_id}")
        if not message.from_bot:
            raise ValueError(f"message {message_id} in chat {chat_id} is the user's")
        if check_button and data not in message.callback_data:
            raise ValueError(
                f"message {message_id} in chat {chat_id} has no button with callback data "
                f"{data!r} (it has {message.callback_data})"
            )
        query_id = str(4_000_000_000_000_000_000 + next(self._callback_ids))
        self._presses[query_id] = _Press(chat_id, message_id, data)
        self._enqueue(
            "callback_query",
            {
                "id": query_id,
                "from": chat.user(user_id),
                "message": self._message_api(message),
                "chat_instance": str(-(7_000_000_000_000_000_000 + chat_id)),
                "data": data,
            },
        )
        return query_id

    def block(self, chat_id: int, blocked: bool = True) -> None:
        """The user blocks (or unblocks) the bot: sends and edits to the chat then answer 403
        `Forbidden: bot was blocked by the user`. A change queues a `my_chat_member` update."""
        chat = self._chat(chat_id)
        chat.seen = True
        if chat.blocked == blocked:
            return
        chat.blocked = blocked
        bot_user = self._bot_user(self._token)
        member = {"status": "member", "user": bot_user}
        kicked = {"status": "kicked", "user": bot_user, "until_date": 0}
        self._enqueue(
            "my_chat_member",
            {
                "chat": chat.api(),
                "from": chat.user(),
                "date": _now(),
                "old_chat_member": member if blocked else kicked,
                "new_chat_member": kicked if blocked else member,
            },
        )

    def flood(self, chat_id: int | None, retry_after: int = 5, times: int = 1) -> None:
        """The next `times` sends or edits to `chat_id` (any chat when None) answer 429
        `Too Many Requests: retry after N` with `parameters.retry_after`."""
        self._floods[chat_id] = [retry_after, times]

    # --- inspection -----------------------------------------------------------------------

    def messages(self, chat_id: int, include_deleted: bool = False) -> list[FakeMessage]:
        """The chat's messages (the bot's and the user's) in order, as snapshots; deleted ones
        only with `include_deleted` (see `deleted_ids`)."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return []
        return [
            copy.deepcopy(message)
            for _, message in sorted(chat.messages.items())
            if include_deleted or not message.deleted
        ]

    def bot_messages(self, chat_id: int) -> list[FakeMessage]:
        return [message for message in self.messages(chat_id) if message.from_bot]

    def deleted_ids(self, chat_id: int) -> list[int]:
        chat = self._chats.get(chat_id)
        if chat is None:
            return []
        return sorted(mid for mid, message in chat.messages.items() if message.deleted)

    def message(self, chat_id: int, message_id: int) -> FakeMessage | None:
        """One message (also when deleted: see its `deleted`), or None."""
        chat = self._chats.get(chat_id)
        message = chat.messages.get(message_id) if chat else None
        return copy.deepcopy(message) if message else None

    def reply_keyboard(self, chat_id: int) -> dict[str, Any] | None:
        """The reply keyboard the user currently sees (the last one sent, until removed)."""
        chat = self._chats.get(chat_id)
        return copy.deepcopy(chat.reply_keyboard) if chat else None

    def is_blocked(self, chat_id: int) -> bool:
        chat = self._chats.get(chat_id)
        return bool(chat and chat.blocked)

    @property
    def tokens(self) -> set[str]:
        """Every token a request came with."""
        return {call.token for call in self._calls}

    def calls(self, method: str | None = None) -> list[ApiCall]:
        """Every API request so far (unknown methods and failed ones too), oldest first."""
        return [
            copy.deepcopy(call)
            for call in self._calls
            if method is None or call.method.lower() == method.lower()
        ]

    @property
    def answered_callbacks(self) -> list[AnsweredCallback]:
        return copy.deepcopy(self._answered)

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not confirmed yet (a `getUpdates` offset has not passed them)."""
        return copy.deepcopy(self._updates)

    def commands(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        """The commands set by `setMyCommands` for that scope and language."""
        return copy.deepcopy(self._commands.get(self._commands_key(scope, language_code), []))

    def transcript(self, chat_id: int) -> str:
        chat = self._chats.get(chat_id)
        if chat is None:
            return f"chat {chat_id}: unknown (no user wrote from it)"
        head = f"chat {chat_id}" + (" (bot blocked)" if chat.blocked else "") + ":"
        lines = [message.describe() for _, message in sorted(chat.messages.items())]
        return "\n  ".join([head, *(lines or ["(no messages)"])])

    # --- waiting --------------------------------------------------------------------------

    async def wait_until(
        self,
        condition: Callable[[], Any],
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for the fake's state
        what: str = "condition",
    ) -> Any:
        """Wait until `condition()` is truthy (checked after every change); returns its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            if result := condition():
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{what} did not happen within {timeout}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def wait_for_bot_message(
        self,
        chat_id: int,
        predicate: Callable[[FakeMessage], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for the fake's state
        after: int | None = None,
    ) -> FakeMessage:
        """The first (lowest id) bot message in the chat that exists now, in its current
        state (edits applied), with an id above `after` (any id when None) and matching
        `predicate`; waits for one to be sent or edited into shape. So to wait for an edit,
        pass a predicate on the new content; to wait for a reply, pass `after=` the user
        message's id. `AssertionError` with the chat's transcript on timeout."""

        def find() -> FakeMessage | None:
            for message in self.bot_messages(chat_id):
                if after is not None and message.message_id <= after:
                    continue
                if predicate is None or predicate(message):
                    return message
            return None

        try:
            return await self.wait_until(find, timeout)
        except AssertionError:
            raise AssertionError(
                f"no bot message in chat {chat_id}"
                + (f" after #{after}" if after is not None else "")
                + (" matching the predicate" if predicate else "")
                + f" within {timeout}s\n{self.transcript(chat_id)}"
            ) from None

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for the fake's state
    ) -> ApiCall:
        """The first recorded call of `method` matching `predicate`, waiting for one."""

        def find() -> ApiCall | None:
            return next((c for c in self.calls(method) if predicate is None or predicate(c)), None)

        try:
            return await self.wait_until(find, timeout)
        except AssertionError:
            seen = ", ".join(call.method for call in self._calls[-20:]) or "none"
            raise AssertionError(
                f"no {method} call{' matching the predicate' if predicate else ''} within "
                f"{timeout}s (last calls: {seen})"
            ) from None

    # --- state helpers --------------------------------------------------------------------

    @property
    def _token(self) -> str:
        """The token the bot uses (configured, or the last one seen): it gives the bot's id."""
        return self.token or self._last_token or ""

    def _chat(self, chat_id: int) -> _Chat:
        if chat_id not in self._chats:
            self._chats[chat_id] = _Chat(chat_id)
        return self._chats[chat_id]

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> None:
        self._updates.append({"update_id": next(self._update_ids), kind: payload})
        self._notify()

    def _bot_user(self, token: str) -> dict[str, Any]:
        prefix = token.partition(":")[0]
        return {
            "id": int(prefix) if prefix.isdigit() else DEFAULT_BOT_ID,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def _message_api(self, message: FakeMessage, token: str | None = None) -> dict[str, Any]:
        chat = self._chats[message.chat_id]
        data: dict[str, Any] = {
            "message_id": message.message_id,
            "date": message.date,
            "chat": chat.api(),
            "from": self._bot_user(token or self._token)
            if message.from_bot
            else chat.user(message.user_id),
        }
        if message.text is not None:
            data["text"] = message.text
        if message.entities:
            data["entities"] = message.entities
        if message.edit_date is not None:
            data["edit_date"] = message.edit_date
        if message.inline_keyboard:
            data["reply_markup"] = {"inline_keyboard": message.inline_keyboard}
        if message.reply_to_message_id is not None:
            replied = chat.messages.get(message.reply_to_message_id)
            if replied is not None and not replied.deleted:
                data["reply_to_message"] = self._message_api(
                    FakeMessage(**{**asdict(replied), "reply_to_message_id": None}), token
                )
        return data

    def _writable_chat(self, params: dict[str, Any]) -> _Chat:
        """The chat a send or edit goes to, or the error Telegram answers for it."""
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _bad_request("chat_id is empty")
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _bad_request("chat not found")
        chat = self._chats.get(raw)
        if chat is None or not chat.seen:
            raise _bad_request("chat not found")
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        for key in (chat.id, None):
            flood = self._floods.get(key)
            if flood is not None:
                retry_after, times = flood
                if times <= 1:
                    del self._floods[key]
                else:
                    flood[1] = times - 1
                raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        return chat

    def _existing_message(self, chat: _Chat, params: dict[str, Any], action: str) -> FakeMessage:
        message_id = _int_param(params, "message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        message = chat.messages.get(message_id)
        if message is None or message.deleted:
            raise _bad_request(f"message to {action} not found")
        return message

    @staticmethod
    def _text(params: dict[str, Any]) -> tuple[str, str]:
        """(displayed text, raw text) of a send or edit."""
        raw = params.get("text")
        if raw is None or not str(raw).strip():
            raise _bad_request("message text is empty")
        raw = str(raw)
        parse_mode = params.get("parse_mode")
        text = (
            parse_html(raw) if isinstance(parse_mode, str) and parse_mode.lower() == "html" else raw
        )
        if not text.strip():
            raise _bad_request("message text is empty")
        if _utf16_len(text) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return text, raw

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        scope = scope or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(language_code or "")

    # --- Bot API --------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        name = request.match_info["method"]
        method = self._handlers_lower.get(name.lower(), name)
        params = await self._read_params(request)
        if self.token is None or token == self.token:
            self._last_token = token
        call = ApiCall(method, params, token, ok=None, at=time.time())
        self._calls.append(call)
        try:
            if self.token is not None and token != self.token:
                raise ApiError(401, "Unauthorized")
            handler = self._handlers.get(method)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            self._notify()  # a long poll is visible (as pending) while it waits
            result = handler(params, token)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as error:
            call.ok, call.error_code, call.description = False, error.code, error.description
            self._notify()
            return web.json_response(error.body(), status=error.code)
        call.ok = True
        self._notify()
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    async def _read_params(request: web.Request) -> dict[str, Any]:
        raw: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                with contextlib.suppress(ValueError):
                    body = await request.json()
                    if isinstance(body, dict):
                        raw.update(body)
            else:
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        raw[key] = {"filename": value.filename, "content_type": value.content_type}
                    else:
                        raw[key] = value
        return {key: _decode_param(key, value) for key, value in raw.items()}

    def _get_me(self, params: dict[str, Any], token: str) -> dict[str, Any]:
        return {
            **self._bot_user(token),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: dict[str, Any], token: str) -> list[dict[str, Any]]:
        offset = _int_param(params, "offset")
        limit = min(max(_int_param(params, "limit", 100) or 100, 1), 100)
        timeout = max(_int_param(params, "timeout", 0) or 0, 0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) or DEFAULT_UPDATE_TYPES
        if offset is not None and offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset is not None and offset < 0:
            self._updates = self._updates[offset:]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            self._drop_not_allowed()
            if self._updates or self._closing:
                return copy.deepcopy(self._updates[:limit])
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def _drop_not_allowed(self) -> None:
        keep: list[dict[str, Any]] = []
        for update in self._updates:
            kind = next(key for key in update if key != "update_id")
            (keep if kind in self._allowed_updates else self.dropped_updates).append(update)
        self._updates = keep

    def _delete_webhook(self, params: dict[str, Any], token: str) -> bool:
        if params.get("drop_pending_updates") is True:
            self.dropped_updates.extend(self._updates)
            self._updates = []
        return True

    def _set_my_commands(self, params: dict[str, Any], token: str) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request('parameter "commands" is required')
        for command in commands:
            if (
                not isinstance(command, dict)
                or not command.get("command")
                or not command.get("description")
            ):
                raise _bad_request("BOT_COMMAND_INVALID")
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        self._commands[key] = commands
        return True

    def _get_my_commands(self, params: dict[str, Any], token: str) -> list[dict[str, Any]]:
        return self.commands(params.get("scope"), params.get("language_code") or "")

    def _delete_my_commands(self, params: dict[str, Any], token: str) -> bool:
        self._commands.pop(
            self._commands_key(params.get("scope"), params.get("language_code")), None
        )
        return True

    def _send_message(self, params: dict[str, Any], token: str) -> dict[str, Any]:
        chat = self._writable_chat(params)
        text, raw = self._text(params)
        markup = _check_reply_markup(params.get("reply_markup"), inline_only=False)
        reply_to = _int_param(params, "reply_to_message_id")
        reply_parameters = params.get("reply_parameters")
        if isinstance(reply_parameters, dict):
            reply_to = _int_param(reply_parameters, "message_id")
        if reply_to is not None:
            replied = chat.messages.get(reply_to)
            if replied is None or replied.deleted:
                if not (
                    isinstance(reply_parameters, dict)
                    and reply_parameters.get("allow_sending_without_reply")
                ):
                    raise _bad_request("message to be replied not found")
                reply_to = None
        if markup is not None:
            if "keyboard" in markup:
                chat.reply_keyboard = markup
            elif markup.get("remove_keyboard"):
                chat.reply_keyboard = None
        parse_mode = params.get("parse_mode")
        message = FakeMessage(
            chat_id=chat.id,
            message_id=chat.take_message_id(),
            from_bot=True,
            text=text,
            raw_text=raw,
            date=_now(),
            parse_mode=parse_mode if isinstance(parse_mode, str) else None,
            reply_markup=markup,
            reply_to_message_id=reply_to,
        )
        chat.messages[message.message_id] = message
        return self._message_api(message, token)

    def _send_chat_action(self, params: dict[str, Any], token: str) -> bool:
        self._writable_chat(params)
        return True

    def _edit_target(self, params: dict[str, Any]) -> tuple[_Chat, FakeMessage]:
        if params.get("inline_message_id"):
            raise _bad_request("MESSAGE_ID_INVALID")
        chat = self._writable_chat(params)
        message = self._existing_message(chat, params, "edit")
        if not message.from_bot:
            raise _bad_request("message can't be edited")
        return chat, message

    def _apply_edit(
        self, message: FakeMessage, token: str, markup: dict[str, Any] | None, **text: Any
    ) -> dict[str, Any]:
        """Apply an edit (the inline keyboard is replaced, None removes it) or answer "message
        is not modified" when the user would see no change."""
        markup = markup if markup and markup["inline_keyboard"] else None
        current = {"inline_keyboard": message.inline_keyboard} if message.inline_keyboard else None
        same_text = all(getattr(message, key) == value for key, value in text.items())
        if same_text and markup == current:
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        for key, value in text.items():
            setattr(message, key, value)
        message.reply_markup = markup
        message.edit_date = _now()
        message.edits += 1
        return self._message_api(message, token)

    def _edit_message_text(self, params: dict[str, Any], token: str) -> dict[str, Any]:
        _, message = self._edit_target(params)
        text, raw = self._text(params)
        markup = _check_reply_markup(params.get("reply_markup"), inline_only=True)
        parse_mode = params.get("parse_mode")
        return self._apply_edit(
            message,
            token,
            markup,
            text=text,
            raw_text=raw,
            parse_mode=parse_mode if isinstance(parse_mode, str) else None,
        )

    def _edit_message_reply_markup(self, params: dict[str, Any], token: str) -> dict[str, Any]:
        _, message = self._edit_target(params)
        markup = _check_reply_markup(params.get("reply_markup"), inline_only=True)
        return self._apply_edit(message, token, markup)

    def _delete_message(self, params: dict[str, Any], token: str) -> bool:
        raw = params.get("chat_id")
        chat = self._chats.get(raw) if isinstance(raw, int) and not isinstance(raw, bool) else None
        if chat is None or not chat.seen:
            raise _bad_request("chat not found")
        message = self._existing_message(chat, params, "delete")
        message.deleted = True
        return True

    def _delete_messages(self, params: dict[str, Any], token: str) -> bool:
        raw = params.get("chat_id")
        chat = self._chats.get(raw) if isinstance(raw, int) and not isinstance(raw, bool) else None
        if chat is None or not chat.seen:
            raise _bad_request("chat not found")
        ids = params.get("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad_request("message_ids must be a list of 1-100 message identifiers")
        found = [chat.messages.get(mid) for mid in ids if isinstance(mid, int)]
        existing = [message for message in found if message and not message.deleted]
        if not existing:
            raise _bad_request("message to delete not found")
        for message in existing:
            message.deleted = True
        return True

    def _answer_callback_query(self, params: dict[str, Any], token: str) -> bool:
        query_id = params.get("callback_query_id")
        press = self._presses.get(str(query_id)) if query_id is not None else None
        if press is None or press.answered:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        press.answered = True
        cache_time = params.get("cache_time")
        self._answered.append(
            AnsweredCallback(
                callback_query_id=str(query_id),
                chat_id=press.chat_id,
                message_id=press.message_id,
                data=press.data,
                text=params.get("text"),
                show_alert=params.get("show_alert") is True,
                url=params.get("url"),
                cache_time=cache_time if isinstance(cache_time, int) else None,
            )
        )
        return True

    def _get_chat(self, params: dict[str, Any], token: str) -> dict[str, Any]:
        raw = params.get("chat_id")
        chat = self._chats.get(raw) if isinstance(raw, int) and not isinstance(raw, bool) else None
        if chat is None or not chat.seen:
            raise _bad_request("chat not found")
        return {
            **chat.api(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": True,
                "limited_gifts": True,
                "unique_gifts": True,
                "premium_subscription": True,
                "gifts_from_channels": True,
            },
        }

    # --- control API ----------------------------------------------------------------------

    def _add_control_routes(self, app: web.Application) -> None:
        app.router.add_post("/control/message", self._control_message)
        app.router.add_post("/control/press", self._control_press)
        app.router.add_post("/control/flood", self._control_flood)
        app.router.add_get("/control/chats/{chat_id}/messages", self._control_messages)
        app.router.add_post("/control/chats/{chat_id}/block", self._control_block)
        app.router.add_get("/control/calls", self._control_calls)
        app.router.add_get("/control/callbacks", self._control_callbacks)

    @staticmethod
    def _control_error(message: str) -> web.HTTPBadRequest:
        return web.HTTPBadRequest(
            text=json.dumps({"error": message}), content_type="application/json"
        )

    @classmethod
    async def _control_body(cls, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except ValueError:
            raise cls._control_error("body is not JSON") from None
        if not isinstance(body, dict):
            raise cls._control_error("body must be a JSON object")
        return body

    @classmethod
    def _control_int(cls, value: Any, name: str) -> int:
        if isinstance(value, int | str) and not isinstance(value, bool):
            with contextlib.suppress(ValueError):
                return int(value)
        raise cls._control_error(f"{name} must be an integer")

    async def _control_message(self, request: web.Request) -> web.Response:
        body = await self._control_body(request)
        text = body.get("text")
        if not isinstance(text, str) or not text:
            raise self._control_error("text must be a non-empty string")
        user_id = body.get("user_id")
        message_id = self.user_message(
            self._control_int(body.get("chat_id"), "chat_id"),
            text,
            user_id=None if user_id is None else self._control_int(user_id, "user_id"),
            first_name=str(body.get("first_name") or "Test"),
            language_code=body.get("language_code", "uz"),
            username=body.get("username"),
        )
        return web.json_response({"message_id": message_id})

    async def _control_press(self, request: web.Request) -> web.Response:
        body = await self._control_body(request)
        data = body.get("data")
        if not isinstance(data, str):
            raise self._control_error("data must be a string")
        user_id = body.get("user_id")
        try:
            query_id = self.press(
                self._control_int(body.get("chat_id"), "chat_id"),
                self._control_int(body.get("message_id"), "message_id"),
                data,
                user_id=None if user_id is None else self._control_int(user_id, "user_id"),
                check_button=body.get("check_button", True) is not False,
            )
        except ValueError as error:
            raise self._control_error(str(error)) from None
        return web.json_response({"callback_query_id": query_id})

    async def _control_flood(self, request: web.Request) -> web.Response:
        body = await self._control_body(request)
        chat_id = body.get("chat_id")
        self.flood(
            None if chat_id is None else self._control_int(chat_id, "chat_id"),
            retry_after=self._control_int(body.get("retry_after", 5), "retry_after"),
            times=self._control_int(body.get("times", 1), "times"),
        )
        return web.json_response({"ok": True})

    async def _control_messages(self, request: web.Request) -> web.Response:
        chat_id = self._control_int(request.match_info["chat_id"], "chat_id")
        return web.json_response(
            {
                "messages": [message.to_json() for message in self.messages(chat_id)],
                "deleted": self.deleted_ids(chat_id),
                "blocked": self.is_blocked(chat_id),
            }
        )

    async def _control_block(self, request: web.Request) -> web.Response:
        chat_id = self._control_int(request.match_info["chat_id"], "chat_id")
        body = await self._control_body(request)
        blocked = body.get("blocked", True)
        if not isinstance(blocked, bool):
            raise self._control_error("blocked must be a boolean")
        self.block(chat_id, blocked)
        return web.json_response({"blocked": blocked})

    async def _control_calls(self, request: web.Request) -> web.Response:
        method = request.query.get("method") or None
        return web.json_response({"calls": [call.to_json() for call in self.calls(method)]})

    async def _control_callbacks(self, request: web.Request) -> web.Response:
        return web.json_response({"answered": [a.to_json() for a in self._answered]})


# --- synchronous client of the control API ------------------------------------------------


class TelegramControl:
    """Drives a `FakeTelegram` running elsewhere (another process) through `/control/`.

    Blocking (httpx): do not use it from the event loop the fake itself runs in."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TelegramControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise ValueError(f"{method} {path}: {response.status_code} {detail}")
        return response.json()

    def message(
        self,
        chat_id: int,
        text: str,
        user_id: int | None = None,
        first_name: str = "Test",
        language_code: str | None = "uz",
    ) -> int:
        """The user writes `text`; returns its message id."""
        body = {"chat_id": chat_id, "text": text, "first_name": first_name}
        body["language_code"] = language_code
        if user_id is not None:
            body["user_id"] = user_id
        return self._request("POST", "/control/message", json=body)["message_id"]

    def press(self, chat_id: int, message_id: int, data: str, user_id: int | None = None) -> str:
        """The user presses the inline button with callback `data`; returns the query id."""
        body: dict[str, Any] = {"chat_id": chat_id, "message_id": message_id, "data": data}
        if user_id is not None:
            body["user_id"] = user_id
        return self._request("POST", "/control/press", json=body)["callback_query_id"]

    def _chat(self, chat_id: int) -> dict[str, Any]:
        return self._request("GET", f"/control/chats/{chat_id}/messages")

    def messages(self, chat_id: int) -> list[FakeMessage]:
        """The chat's existing (not deleted) messages, in order."""
        return [FakeMessage.from_json(m) for m in self._chat(chat_id)["messages"]]

    def bot_messages(self, chat_id: int) -> list[FakeMessage]:
        return [message for message in self.messages(chat_id) if message.from_bot]

    def deleted(self, chat_id: int) -> list[int]:
        """Ids of the chat's deleted messages."""
        return self._chat(chat_id)["deleted"]

    def block(self, chat_id: int, blocked: bool = True) -> None:
        self._request("POST", f"/control/chats/{chat_id}/block", json={"blocked": blocked})

    def flood(self, chat_id: int | None, retry_after: int = 5, times: int = 1) -> None:
        body = {"chat_id": chat_id, "retry_after": retry_after, "times": times}
        self._request("POST", "/control/flood", json=body)

    def calls(self, method: str | None = None) -> list[ApiCall]:
        params = {"method": method} if method else None
        return [
            ApiCall(**c) for c in self._request("GET", "/control/calls", params=params)["calls"]
        ]

    def answered_callbacks(self) -> list[AnsweredCallback]:
        return [
            AnsweredCallback(**a) for a in self._request("GET", "/control/callbacks")["answered"]
        ]

    def wait_for_bot_message(
        self,
        chat_id: int,
        predicate: Callable[[FakeMessage], bool] | None = None,
        timeout: float = 10.0,
        after: int | None = None,
        poll_interval: float = 0.05,
    ) -> FakeMessage:
        """Same rule as `FakeTelegram.wait_for_bot_message`, by polling the control API."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages(chat_id)
            for message in messages:
                if not message.from_bot or (after is not None and message.message_id <= after):
                    continue
                if predicate is None or predicate(message):
                    return message
            if time.monotonic() >= deadline:
                lines = [message.describe() for message in messages] or ["(no messages)"]
                raise AssertionError(
                    f"no bot message in chat {chat_id}"
                    + (f" after #{after}" if after is not None else "")
                    + (" matching the predicate" if predicate else "")
                    + f" within {timeout}s\n"
                    + "\n  ".join([f"chat {chat_id}:", *lines])
                )
            time.sleep(poll_interval)


# --- process entry point ------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeTelegram(args.host, args.port, token=args.token, bot_username=args.bot_username)
    async with fake:
        print(json.dumps({"url": fake.url, "host": fake.host, "port": fake.port}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m autopay_testing.telegram",
        description="Fake Telegram Bot API server (in memory) with a /control/ API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", help="accept only this bot token (default: any)")
    parser.add_argument("--bot-username", default="autopay_test_bot")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
