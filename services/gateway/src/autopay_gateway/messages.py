"""Error messages in Uzbek (default, as the original), English and Russian.

`ApiError(status, code, **params)` carries a catalogue code; the handler renders it in the
language the request's `Accept-Language` prefers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_LANGUAGE = "uz"
LANGUAGES = ("uz", "en", "ru")

_HINT_APP_PASSWORD = {
    "uz": (
        "Oddiy Gmail parol ishlamaydi — myaccount.google.com/apppasswords da 16 belgili "
        "App Password yarating (2 bosqichli tasdiqlash yoqilgan bo'lishi kerak) va Gmail "
        "sozlamalarida IMAP yoqilganini tekshiring."
    ),
    "en": (
        "Your normal Gmail password does not work — create a 16-character App Password at "
        "myaccount.google.com/apppasswords (2-Step Verification must be on) and make sure IMAP "
        "is enabled in Gmail settings."
    ),
    "ru": (
        "Обычный пароль Gmail не подойдёт — создайте 16-символьный пароль приложения на "
        "myaccount.google.com/apppasswords (нужна двухэтапная аутентификация) и проверьте, "
        "что в настройках Gmail включён IMAP."
    ),
}

CATALOGUE: dict[str, dict[str, str]] = {
    "unauthorized": {
        "uz": "API kalit noto'g'ri yoki yo'q. x-api-key headerni tekshiring.",
        "en": "API key is missing or invalid. Check the x-api-key header.",
        "ru": "API-ключ отсутствует или неверен. Проверьте заголовок x-api-key.",
    },
    "no_subscription": {
        "uz": "Faol obuna yo'q! {bot} da obuna oling.",
        "en": "No active subscription! Subscribe in {bot}.",
        "ru": "Нет активной подписки! Оформите подписку в {bot}.",
    },
    "limit_reached": {
        "uz": "To'lovlar limiti tugadi! {bot} da obunani yangilang.",
        "en": "Payment limit reached! Renew your subscription in {bot}.",
        "ru": "Лимит платежей исчерпан! Обновите подписку в {bot}.",
    },
    "card_not_connected": {
        "uz": (
            "Karta ulanmagan: card_last4 + gmail kombinatsiyasi {bot} da ulangan "
            "bo'lishi shart. /api/my-cards orqali tekshiring."
        ),
        "en": (
            "Card not connected: this card_last4 + gmail pair must be connected to your "
            "account. Check /api/my-cards."
        ),
        "ru": (
            "Карта не подключена: пара card_last4 + gmail должна быть подключена к вашему "
            "аккаунту. Проверьте /api/my-cards."
        ),
    },
    "order_not_found": {
        "uz": "To'lov topilmadi. order_id ni tekshiring.",
        "en": "Payment not found. Check the order_id.",
        "ru": "Платёж не найден. Проверьте order_id.",
    },
    "amount_reserved": {
        "uz": "Bu summa ushbu kartada band (boshqa to'lov uchun). Boshqa unikal summa tanlang.",
        "en": "This amount is already reserved on this card. Choose another unique amount.",
        "ru": "Эта сумма уже зарезервирована на этой карте. Выберите другую уникальную сумму.",
    },
    "no_free_amount": {
        "uz": "Bu summa uchun kartada bo'sh unikal summa qolmadi. Birozdan so'ng urinib ko'ring.",
        "en": "No free unique amount is left for this base amount on this card. Try again soon.",
        "ru": "Для этой суммы на карте не осталось свободной уникальной суммы. Повторите позже.",
    },
    "cannot_cancel": {
        "uz": "To'lovni bekor qilib bo'lmaydi: holati {status}.",
        "en": "The payment cannot be cancelled: it is {status}.",
        "ru": "Платёж нельзя отменить: его статус {status}.",
    },
    "rate_limited": {
        "uz": "Juda ko'p so'rov. Biroz kuting va qayta urinib ko'ring.",
        "en": "Too many requests. Wait a moment and try again.",
        "ru": "Слишком много запросов. Подождите и повторите попытку.",
    },
    "internal": {
        "uz": "Server xatosi. {bot} ga xabar bering.",
        "en": "Internal server error. Please report it to {bot}.",
        "ru": "Внутренняя ошибка сервера. Сообщите в {bot}.",
    },
    "unavailable": {
        "uz": "Xizmat vaqtincha ishlamayapti. Birozdan so'ng qayta urinib ko'ring.",
        "en": "Service temporarily unavailable. Try again shortly.",
        "ru": "Сервис временно недоступен. Повторите попытку позже.",
    },
    "invalid_json": {
        "uz": "So'rov tanasi noto'g'ri: JSON obyekt kutilgan.",
        "en": "Invalid request body: a JSON object is expected.",
        "ru": "Неверное тело запроса: ожидается JSON-объект.",
    },
    "missing": {
        "uz": "Majburiy parametr yo'q: {field}.",
        "en": "Missing required parameter: {field}.",
        "ru": "Отсутствует обязательный параметр: {field}.",
    },
    "invalid_param": {
        "uz": "Parametr noto'g'ri: {field}.",
        "en": "Invalid parameter: {field}.",
        "ru": "Неверный параметр: {field}.",
    },
    "invalid_amount": {
        "uz": "{field} noto'g'ri: 1 dan {max} gacha butun son (so'mda) bo'lishi kerak.",
        "en": "Invalid {field}: must be an integer from 1 to {max} (so'm).",
        "ru": "Неверный {field}: должно быть целое число от 1 до {max} (в сумах).",
    },
    "amount_conflict": {
        "uz": "amount va amount_base dan faqat bittasini yuboring.",
        "en": "Send either amount or amount_base, not both.",
        "ru": "Передайте либо amount, либо amount_base, но не оба.",
    },
    "invalid_card_last4": {
        "uz": "card_last4 noto'g'ri: 4 ta raqamdan iborat satr bo'lishi kerak, masalan \"6412\".",
        "en": 'Invalid card_last4: must be a string of 4 digits, e.g. "6412".',
        "ru": 'Неверный card_last4: должна быть строка из 4 цифр, например "6412".',
    },
    "invalid_gmail": {
        "uz": "gmail noto'g'ri: email manzil bo'lishi kerak, masalan \"karta@gmail.com\".",
        "en": 'Invalid gmail: must be an e-mail address, e.g. "karta@gmail.com".',
        "ru": 'Неверный gmail: должен быть адрес e-mail, например "karta@gmail.com".',
    },
    "invalid_client_user_id": {
        "uz": "client_user_id noto'g'ri: {max} belgigacha satr yoki son bo'lishi kerak.",
        "en": "Invalid client_user_id: must be a string or a number of up to {max} characters.",
        "ru": "Неверный client_user_id: должна быть строка или число длиной до {max} символов.",
    },
    "invalid_client_user_data": {
        "uz": "client_user_data noto'g'ri: {max} baytgacha JSON obyekt bo'lishi kerak.",
        "en": "Invalid client_user_data: must be a JSON object of up to {max} bytes.",
        "ru": "Неверный client_user_data: должен быть JSON-объект размером до {max} байт.",
    },
    "invalid_webhook_url": {
        "uz": "webhook_url noto'g'ri: https:// bilan boshlanadigan to'liq URL bo'lishi kerak.",
        "en": "Invalid webhook_url: must be a full URL starting with https://.",
        "ru": "Неверный webhook_url: должен быть полный URL, начинающийся с https://.",
    },
    "invalid_order_id": {
        "uz": "order_id noto'g'ri: satr bo'lishi kerak, masalan \"10001\".",
        "en": 'Invalid order_id: must be a string, e.g. "10001".',
        "ru": 'Неверный order_id: должна быть строка, например "10001".',
    },
    "invalid_app_password": {
        "uz": "app_password noto'g'ri: Gmail App Password kerak. " + _HINT_APP_PASSWORD["uz"],
        "en": "Invalid app_password: a Gmail App Password is required. " + _HINT_APP_PASSWORD["en"],
        "ru": "Неверный app_password: нужен пароль приложения Gmail. " + _HINT_APP_PASSWORD["ru"],
    },
    "imap_auth_failed": {
        "uz": "Gmail ga kirib bo'lmadi: App Password noto'g'ri. " + _HINT_APP_PASSWORD["uz"],
        "en": "Gmail login failed: the App Password was refused. " + _HINT_APP_PASSWORD["en"],
        "ru": "Не удалось войти в Gmail: пароль приложения отклонён. " + _HINT_APP_PASSWORD["ru"],
    },
    "imap_unreachable": {
        "uz": "Gmail IMAP serveriga ulanib bo'lmadi. Birozdan so'ng qayta urinib ko'ring. "
        + _HINT_APP_PASSWORD["uz"],
        "en": "Could not connect to the Gmail IMAP server. Try again shortly. "
        + _HINT_APP_PASSWORD["en"],
        "ru": "Не удалось подключиться к IMAP-серверу Gmail. Повторите попытку позже. "
        + _HINT_APP_PASSWORD["ru"],
    },
    "no_deliveries": {
        "uz": "Bu to'lov uchun webhook yuborilmagan.",
        "en": "No webhook was sent for this payment.",
        "ru": "Для этого платежа вебхук не отправлялся.",
    },
    "delivery_in_progress": {
        "uz": "Webhook hozir yuborilmoqda; birozdan so'ng qayta urinib ko'ring.",
        "en": "The webhook is being sent right now; try again in a moment.",
        "ru": "Вебхук отправляется прямо сейчас; повторите чуть позже.",
    },
    "no_webhook_url": {
        "uz": "webhook_url yo'q: uni so'rovda yoki /api/settings da bering.",
        "en": "No webhook_url: give one in the request or in /api/settings.",
        "ru": "Нет webhook_url: укажите его в запросе или в /api/settings.",
    },
    "invalid_notify_events": {
        "uz": "Noto'g'ri notify_events: ro'yxat, mumkin bo'lganlar: {allowed}.",
        "en": "Invalid notify_events: a list of {allowed}.",
        "ru": "Неверный notify_events: список из {allowed}.",
    },
    "webhook_url_internal": {
        "uz": "webhook_url ichki tarmoq manziliga ishora qiladi; ochiq https manzil kerak.",
        "en": "webhook_url points to an internal address; a public https URL is required.",
        "ru": "webhook_url указывает на внутренний адрес; нужен публичный https-адрес.",
    },
    "transaction_not_found": {
        "uz": "Tranzaksiya topilmadi. id ni tekshiring.",
        "en": "Transaction not found. Check the id.",
        "ru": "Транзакция не найдена. Проверьте id.",
    },
    "transaction_not_matchable": {
        "uz": "Bu tranzaksiyani bog'lab bo'lmaydi: holati {status}.",
        "en": "This transaction cannot be matched or dismissed: it is {status}.",
        "ru": "Эту транзакцию нельзя сопоставить или отклонить: её статус {status}.",
    },
    "credit_consumed": {
        "uz": "Bu to'lov allaqachon {order_id} buyurtmasiga bog'langan.",
        "en": "This money already paid order {order_id}.",
        "ru": "Эти деньги уже оплатили заказ {order_id}.",
    },
    "cannot_match": {
        "uz": "Buyurtmani to'langan deb belgilab bo'lmaydi: holati {status}.",
        "en": "The order cannot be paid: it is {status}.",
        "ru": "Заказ нельзя оплатить: его статус {status}.",
    },
    "order_other_card": {
        "uz": "Buyurtma boshqa karta yoki gmail uchun yaratilgan.",
        "en": "The order is for another card or gmail than this transaction.",
        "ru": "Заказ создан для другой карты или gmail, чем эта транзакция.",
    },
    "invalid_cursor": {
        "uz": "Noto'g'ri cursor: oldingi javobdagi next_cursor ni yuboring.",
        "en": "Invalid cursor: send the next_cursor of the previous answer.",
        "ru": "Неверный cursor: передайте next_cursor из предыдущего ответа.",
    },
    "invalid_status_filter": {
        "uz": "Noto'g'ri status. Mumkin: {allowed}.",
        "en": "Invalid status. Allowed: {allowed}.",
        "ru": "Неверный status. Допустимо: {allowed}.",
    },
    "invalid_since": {
        "uz": "Noto'g'ri since: \"YYYY-MM-DD HH:MM:SS\" (Toshkent vaqti) yoki ISO 8601.",
        "en": 'Invalid since: "YYYY-MM-DD HH:MM:SS" (Tashkent time) or ISO 8601.',
        "ru": 'Неверный since: "YYYY-MM-DD HH:MM:SS" (время Ташкента) или ISO 8601.',
    },
    "invalid_limit": {
        "uz": "Noto'g'ri limit: 1 dan {max} gacha butun son.",
        "en": "Invalid limit: a whole number from 1 to {max}.",
        "ru": "Неверный limit: целое число от 1 до {max}.",
    },
    "too_many_sandbox_cards": {
        "uz": "Test rejimida kartalar soni chegarasiga yetildi.",
        "en": "The sandbox card limit has been reached.",
        "ru": "Достигнут предел числа тестовых карт.",
    },
    "card_taken": {
        "uz": "Bu karta va gmail boshqa hisobga ulangan.",
        "en": "This card and gmail are connected to another account.",
        "ru": "Эта карта и gmail подключены к другому аккаунту.",
    },
    "mailbox_taken": {
        "uz": (
            "Bu gmail pochta qutisi boshqa hisobga ulangan. Bitta pochta qutisi (nuqtalar, +teg "
            "va googlemail.com farqi hisobga olinmaydi) faqat bitta hisobga tegishli bo'ladi."
        ),
        "en": (
            "This Gmail mailbox is connected to another account. A mailbox (ignoring dots, "
            "+tags and googlemail.com) belongs to one account only."
        ),
        "ru": (
            "Этот почтовый ящик Gmail подключён к другому аккаунту. Ящик (без учёта точек, "
            "+меток и googlemail.com) принадлежит только одному аккаунту."
        ),
    },
    "invalid_aliases": {
        "uz": "aliases noto'g'ri: {max} tagacha email manzillar ro'yxati bo'lishi kerak.",
        "en": "Invalid aliases: must be a list of up to {max} e-mail addresses.",
        "ru": "Неверный aliases: должен быть список не более чем из {max} адресов e-mail.",
    },
    "card_not_found": {
        "uz": "Karta topilmadi.",
        "en": "Card not found.",
        "ru": "Карта не найдена.",
    },
    "idempotency_mismatch": {
        "uz": "Bu Idempotency-Key boshqa so'rov bilan ishlatilgan.",
        "en": "This Idempotency-Key was already used with a different request.",
        "ru": "Этот Idempotency-Key уже использован с другим запросом.",
    },
    "idempotency_in_progress": {
        "uz": "Shu Idempotency-Key bilan so'rov hali bajarilmoqda. Biroz kuting.",
        "en": "A request with this Idempotency-Key is still in progress. Wait a moment.",
        "ru": "Запрос с этим Idempotency-Key ещё выполняется. Подождите.",
    },
    "login_checks_limited": {
        "uz": "Gmail kirishini tekshirish juda ko'p: bir daqiqadan so'ng qayta urinib ko'ring.",
        "en": "Too many Gmail login checks: try again in a minute.",
        "ru": "Слишком много проверок входа в Gmail: повторите через минуту.",
    },
    "body_too_large": {
        "uz": "So'rov tanasi juda katta: ko'pi bilan 64 KiB.",
        "en": "Request body too large: at most 64 KiB.",
        "ru": "Тело запроса слишком большое: не более 64 КиБ.",
    },
    "invalid_idempotency_key": {
        "uz": "Idempotency-Key noto'g'ri: 1 dan 255 gacha belgi bo'lishi kerak.",
        "en": "Invalid Idempotency-Key: must be 1 to 255 characters.",
        "ru": "Неверный Idempotency-Key: должен содержать от 1 до 255 символов.",
    },
    "sandbox_only": {
        "uz": "Bu amal faqat test rejimidagi kalit bilan ishlaydi.",
        "en": "This action requires a test-mode API key.",
        "ru": "Это действие доступно только с тестовым API-ключом.",
    },
    # --- the admin API (the merchant bot and operators) ----------------------------------
    "admin_unauthorized": {
        "uz": "Admin token noto'g'ri yoki yo'q. Authorization: Bearer headerni tekshiring.",
        "en": "Admin token is missing or invalid. Check the Authorization: Bearer header.",
        "ru": "Токен администратора отсутствует или неверен. Проверьте заголовок "
        "Authorization: Bearer.",
    },
    "invalid_name": {
        "uz": "name noto'g'ri: 1 dan {max} gacha belgili matn bo'lishi kerak.",
        "en": "Invalid name: must be text of 1 to {max} characters.",
        "ru": "Неверное name: нужен текст от 1 до {max} символов.",
    },
    "invalid_tariff": {
        "uz": "tariff noto'g'ri: tarif nomi (matn) bo'lishi kerak.",
        "en": "Invalid tariff: must be a tariff name (text).",
        "ru": "Неверный tariff: нужно название тарифа (текст).",
    },
    "unknown_tariff": {
        "uz": "Bunday tarif yo'q (unknown tariff): {tariff}.",
        "en": "Unknown tariff: {tariff}.",
        "ru": "Такого тарифа нет (unknown tariff): {tariff}.",
    },
    "invalid_invite": {
        "uz": "Taklif kodi (invite_code) noto'g'ri, ishlatib bo'lingan yoki muddati o'tgan.",
        "en": "The invite code (invite_code) is unknown, used up or expired.",
        "ru": "Код приглашения (invite_code) неверен, уже использован или истёк.",
    },
    "invalid_key_mode": {
        "uz": "mode noto'g'ri: {allowed} dan biri bo'lishi kerak.",
        "en": "Invalid mode: must be one of {allowed}.",
        "ru": "Неверный mode: допустимо одно из {allowed}.",
    },
    "invalid_subscription_order": {
        "uz": "order_id noto'g'ri: 1 dan {max} gacha belgi bo'lishi kerak.",
        "en": "Invalid order_id: must be 1 to {max} characters.",
        "ru": "Неверный order_id: должен содержать от 1 до {max} символов.",
    },
    "subscription_order_taken": {
        "uz": "Bu to'lov (order_id) boshqa merchant obunasini uzaytirgan.",
        "en": "This order already extended another merchant's subscription.",
        "ru": "Этот заказ (order_id) уже продлил подписку другого мерчанта.",
    },
    "merchant_not_found": {
        "uz": "Merchant topilmadi.",
        "en": "Merchant not found.",
        "ru": "Мерчант не найден.",
    },
    "mailbox_not_found": {
        "uz": "Pochta qutisi hech kimga tegishli emas.",
        "en": "Nobody owns this mailbox.",
        "ru": "Этот почтовый ящик никому не принадлежит.",
    },
    "not_found": {"uz": "Topilmadi.", "en": "Not found.", "ru": "Не найдено."},
    "method_not_allowed": {
        "uz": "Bu metod ruxsat etilmagan.",
        "en": "Method not allowed.",
        "ru": "Метод не разрешён.",
    },
}


class ApiError(Exception):
    """An error answer: HTTP status, catalogue code and its parameters."""

    def __init__(
        self,
        http_status: int,
        code: str,
        /,
        headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(code)
        self.status = http_status
        self.code = code
        self.params = params
        self.headers = headers


def negotiate(accept_language: str | None) -> str:
    """The first supported language of an `Accept-Language` header (by q-value), else Uzbek."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-", 1)[0]
        if lang not in LANGUAGES:
            continue
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        score = q - position * 1e-6
        if q > 0 and score > best_q:
            best, best_q = lang, score
    return best


DEFAULT_BOT_HANDLE = "@Autopaycardbot"
"""Where merchants manage their subscription and cards (the gateway's `bot_handle` setting)."""


def render(code: str, language: str, bot: str = DEFAULT_BOT_HANDLE, **params: Any) -> str:
    texts = CATALOGUE.get(code) or CATALOGUE["internal"]
    text = texts.get(language) or texts[DEFAULT_LANGUAGE]
    return text.format(bot=bot, **params) if "{" in text else text
