"""What the bot says, in Uzbek (the default), Russian and English.

Every text is HTML (the bot's parse mode); values from outside (names, addresses, errors) are
escaped by `say`. A test checks that every key has all three languages and the same fields.
"""

from __future__ import annotations

import html
from string import Formatter

LANGUAGES = ("uz", "ru", "en")

APP_PASSWORD_STEPS = {
    "uz": (
        "Gmail App parol — oddiy Gmail paroldan farqli, ilovalar uchun 16 belgili parol:\n"
        "1. myaccount.google.com ga o'ting va Google hisobingizga kiring;\n"
        "2. 2 bosqichli tekshiruvni yoqing (Xavfsizlik bo'limi);\n"
        "3. myaccount.google.com/apppasswords kiriting va Enter bosing;\n"
        "4. Ilova nomini yozing (masalan, AutoPay) va «Yaratish» ni bosing;\n"
        "5. Ko'rsatilgan 16 belgili parolni shu yerga yuboring."
    ),
    "ru": (
        "Пароль приложения Gmail — не обычный пароль, а 16-символьный пароль для приложений:\n"
        "1. Откройте myaccount.google.com и войдите в аккаунт Google;\n"
        "2. Включите двухэтапную аутентификацию (раздел «Безопасность»);\n"
        "3. Откройте myaccount.google.com/apppasswords;\n"
        "4. Введите имя приложения (например, AutoPay) и нажмите «Создать»;\n"
        "5. Пришлите сюда показанный 16-символьный пароль."
    ),
    "en": (
        "A Gmail App Password is not your Gmail password but a 16-character password for apps:\n"
        "1. Open myaccount.google.com and sign in to your Google account;\n"
        "2. Turn on 2-Step Verification (Security);\n"
        "3. Open myaccount.google.com/apppasswords;\n"
        "4. Type an app name (e.g. AutoPay) and press Create;\n"
        "5. Send the 16-character password shown here."
    ),
}

TEXTS: dict[str, dict[str, str]] = {
    "choose_language": {
        "uz": "Tilni tanlang:",
        "ru": "Выберите язык:",
        "en": "Choose a language:",
    },
    "language_set": {
        "uz": "Til: o'zbekcha.",
        "ru": "Язык: русский.",
        "en": "Language: English.",
    },
    "ask_invite": {
        "uz": "AutoPay ga xush kelibsiz! Ro'yxatdan o'tish uchun operator bergan taklif kodini "
        "yuboring.",
        "ru": "Добро пожаловать в AutoPay! Для регистрации пришлите код приглашения от оператора.",
        "en": "Welcome to AutoPay! To register, send the invite code the operator gave you.",
    },
    "invite_invalid": {
        "uz": "Taklif kodi noto'g'ri, ishlatilgan yoki muddati o'tgan. Qayta yuboring.",
        "ru": "Код приглашения неверен, использован или просрочен. Пришлите другой.",
        "en": "That invite code is wrong, used or expired. Send another one.",
    },
    "ask_shop_name": {
        "uz": "Do'koningiz (loyihangiz) nomini yozing:",
        "ru": "Напишите название вашего магазина (проекта):",
        "en": "Type the name of your shop (project):",
    },
    "bad_shop_name": {
        "uz": "Nom 1–64 belgidan iborat bo'lsin.",
        "ru": "Название — от 1 до 64 символов.",
        "en": "The name must be 1–64 characters.",
    },
    "registered": {
        "uz": "✅ <b>{name}</b> ro'yxatdan o'tdi (ID {merchant_id}), tarif: {tariff}.\n\n"
        "🔑 API kalit (x-api-key):\n<code>{api_key}</code>\n\n"
        "✍️ Webhook imzo siri:\n<code>{webhook_secret}</code>\n\n"
        "Ular faqat bir marta ko'rsatiladi — hoziroq saqlang. Yo'qolsa, /key bilan "
        "yangilang.",
        "ru": "✅ <b>{name}</b> зарегистрирован (ID {merchant_id}), тариф: {tariff}.\n\n"
        "🔑 API-ключ (x-api-key):\n<code>{api_key}</code>\n\n"
        "✍️ Секрет подписи вебхуков:\n<code>{webhook_secret}</code>\n\n"
        "Они показываются один раз — сохраните сейчас. Если потеряете, обновите через /key.",
        "en": "✅ <b>{name}</b> is registered (ID {merchant_id}), tariff: {tariff}.\n\n"
        "🔑 API key (x-api-key):\n<code>{api_key}</code>\n\n"
        "✍️ Webhook signing secret:\n<code>{webhook_secret}</code>\n\n"
        "They are shown once — save them now. If you lose them, rotate with /key.",
    },
    "next_steps": {
        "uz": "Keyingi qadamlar:\n1. /addcard — kartani Gmail bilan ulang;\n"
        "2. To'lov yarating:\n<pre>{curl}</pre>\n3. Python:\n<pre>{python}</pre>\n"
        "4. /sandbox — sinov kaliti (pul harakatisiz).",
        "ru": "Дальше:\n1. /addcard — подключите карту с Gmail;\n2. Создайте платёж:\n"
        "<pre>{curl}</pre>\n3. Python:\n<pre>{python}</pre>\n"
        "4. /sandbox — тестовый ключ (без денег).",
        "en": "Next steps:\n1. /addcard — connect a card with its Gmail;\n"
        "2. Create a payment:\n<pre>{curl}</pre>\n3. Python:\n<pre>{python}</pre>\n"
        "4. /sandbox — a test key (no real money).",
    },
    "menu": {
        "uz": "Buyruqlar: /cards kartalar · /addcard karta qo'shish · /subscription obuna · "
        "/key API kalit · /secret webhook siri · /sandbox sinov kaliti · /language til · "
        "/help yordam",
        "ru": "Команды: /cards карты · /addcard добавить карту · /subscription подписка · "
        "/key API-ключ · /secret секрет вебхуков · /sandbox тестовый ключ · /language язык · "
        "/help помощь",
        "en": "Commands: /cards cards · /addcard add a card · /subscription subscription · "
        "/key API key · /secret webhook secret · /sandbox test key · /language language · "
        "/help help",
    },
    "welcome_back": {
        "uz": "Siz ro'yxatdan o'tgansiz (ID {merchant_id}).",
        "ru": "Вы уже зарегистрированы (ID {merchant_id}).",
        "en": "You are registered (ID {merchant_id}).",
    },
    "not_linked": {
        "uz": "Avval ro'yxatdan o'ting: /start",
        "ru": "Сначала зарегистрируйтесь: /start",
        "en": "Register first: /start",
    },
    "ask_card_last4": {
        "uz": "Kartaning oxirgi 4 raqamini yuboring (masalan, 6412):",
        "ru": "Пришлите последние 4 цифры карты (например, 6412):",
        "en": "Send the card's last 4 digits (e.g. 6412):",
    },
    "bad_card_last4": {
        "uz": "Aynan 4 ta raqam kerak.",
        "ru": "Нужно ровно 4 цифры.",
        "en": "Exactly 4 digits, please.",
    },
    "ask_gmail": {
        "uz": "Bank xabarlari keladigan Gmail manzilni yuboring:",
        "ru": "Пришлите адрес Gmail, куда приходят уведомления банка:",
        "en": "Send the Gmail address the bank's notifications arrive at:",
    },
    "bad_gmail": {
        "uz": "Bu e-pochta manzilga o'xshamaydi.",
        "ru": "Это не похоже на адрес почты.",
        "en": "That does not look like an e-mail address.",
    },
    "ask_app_password": {
        "uz": "{steps}\n\nXabaringiz tekshiruvdan so'ng darhol o'chiriladi.",
        "ru": "{steps}\n\nСообщение с паролем будет удалено сразу после проверки.",
        "en": "{steps}\n\nThe message with the password is deleted right after the check.",
    },
    "checking_login": {
        "uz": "Gmail ga kirish tekshirilmoqda…",
        "ru": "Проверяю вход в Gmail…",
        "en": "Checking the Gmail login…",
    },
    "password_deleted": {
        "uz": "🔒 Parolli xabar o'chirildi.",
        "ru": "🔒 Сообщение с паролем удалено.",
        "en": "🔒 The message with the password was deleted.",
    },
    "card_added": {
        "uz": "✅ Karta ****{card_last4} ({gmail}) ulandi (ID {card_id}).",
        "ru": "✅ Карта ****{card_last4} ({gmail}) подключена (ID {card_id}).",
        "en": "✅ Card ****{card_last4} ({gmail}) is connected (ID {card_id}).",
    },
    "card_failed": {
        "uz": "❌ Karta ulanmadi: {detail}\n\nApp parolni qayta yarating va /addcard bilan "
        "yana urinib ko'ring.",
        "ru": "❌ Карта не подключена: {detail}\n\nСоздайте пароль приложения заново и "
        "повторите /addcard.",
        "en": "❌ The card was not connected: {detail}\n\nCreate the App Password again and "
        "retry with /addcard.",
    },
    "no_cards": {
        "uz": "Ulangan karta yo'q. /addcard",
        "ru": "Подключённых карт нет. /addcard",
        "en": "No cards connected. /addcard",
    },
    "cards_header": {
        "uz": "Kartalaringiz:",
        "ru": "Ваши карты:",
        "en": "Your cards:",
    },
    "card_line": {
        "uz": "{health} ****{card_last4} · {gmail} (ID {card_id}) · oxirgi xat: {last_mail}",
        "ru": "{health} ****{card_last4} · {gmail} (ID {card_id}) · последнее письмо: {last_mail}",
        "en": "{health} ****{card_last4} · {gmail} (ID {card_id}) · last mail: {last_mail}",
    },
    "remove_button": {
        "uz": "🗑 ****{card_last4} ni o'chirish",
        "ru": "🗑 Удалить ****{card_last4}",
        "en": "🗑 Remove ****{card_last4}",
    },
    "card_removed": {
        "uz": "🗑 Karta ****{card_last4} (ID {card_id}) o'chirildi.",
        "ru": "🗑 Карта ****{card_last4} (ID {card_id}) удалена.",
        "en": "🗑 Card ****{card_last4} (ID {card_id}) was removed.",
    },
    "key_confirm": {
        "uz": "Yangi API kalit chiqarilsinmi? Eskisi darhol ishlamay qoladi.",
        "ru": "Выпустить новый API-ключ? Старый сразу перестанет работать.",
        "en": "Issue a new API key? The old one stops working at once.",
    },
    "yes_rotate": {
        "uz": "🔄 Ha, yangilash",
        "ru": "🔄 Да, обновить",
        "en": "🔄 Yes, rotate",
    },
    "key_rotated": {
        "uz": "🔑 Yangi API kalit:\n<code>{api_key}</code>\nEskisi endi ishlamaydi.",
        "ru": "🔑 Новый API-ключ:\n<code>{api_key}</code>\nСтарый больше не работает.",
        "en": "🔑 New API key:\n<code>{api_key}</code>\nThe old one no longer works.",
    },
    "secret_rotated": {
        "uz": "✍️ Yangi webhook siri:\n<code>{secret}</code>\nEskisi yana 24 soat amal qiladi.",
        "ru": "✍️ Новый секрет вебхуков:\n<code>{secret}</code>\nСтарый действует ещё 24 часа.",
        "en": "✍️ New webhook secret:\n<code>{secret}</code>\nThe old one stays valid for 24 h.",
    },
    "sandbox_key": {
        "uz": "🧪 Sinov kaliti (sandbox):\n<code>{api_key}</code>\nU bilan yaratilgan to'lovlar "
        "haqiqiy pulga tegmaydi; /api/sandbox/transfer bilan to'lang.",
        "ru": "🧪 Тестовый ключ (sandbox):\n<code>{api_key}</code>\nПлатежи с ним не касаются "
        "настоящих денег; оплачивайте через /api/sandbox/transfer.",
        "en": "🧪 Test key (sandbox):\n<code>{api_key}</code>\nPayments made with it touch no "
        "real money; pay them with /api/sandbox/transfer.",
    },
    "subscription": {
        "uz": "📦 Tarif: {tariff} · {state}\nMuddati: {expires_at}\nTo'lovlar: {used} / {max}",
        "ru": "📦 Тариф: {tariff} · {state}\nДо: {expires_at}\nПлатежи: {used} / {max}",
        "en": "📦 Tariff: {tariff} · {state}\nUntil: {expires_at}\nPayments: {used} / {max}",
    },
    "active": {"uz": "faol", "ru": "активна", "en": "active"},
    "inactive": {"uz": "faol emas", "ru": "неактивна", "en": "inactive"},
    "buy_button": {
        "uz": "🛒 {tariff}: {price} so'm / {days} kun",
        "ru": "🛒 {tariff}: {price} сум / {days} дн.",
        "en": "🛒 {tariff}: {price} so'm / {days} days",
    },
    "no_tariffs": {
        "uz": "Hozircha sotuvdagi tarif yo'q.",
        "ru": "Сейчас нет тарифов в продаже.",
        "en": "No tariffs are on sale right now.",
    },
    "purchase_unavailable": {
        "uz": "Obuna sotib olish hozircha sozlanmagan. Operatorga murojaat qiling.",
        "ru": "Покупка подписки пока не настроена. Обратитесь к оператору.",
        "en": "Buying a subscription is not set up yet. Ask the operator.",
    },
    "purchase_created": {
        "uz": "💳 To'lov yaratildi!\n\n🏦 Kartaga: ****{card_last4}\n💰 Summa: <b>{amount}</b> "
        "so'm (aynan shu summa)\n🆔 Order: {order_id}\n\n⏳ {minutes} daqiqa ichida o'tkazing!",
        "ru": "💳 Платёж создан!\n\n🏦 На карту: ****{card_last4}\n💰 Сумма: <b>{amount}</b> "
        "сум (ровно эта сумма)\n🆔 Заказ: {order_id}\n\n⏳ Переведите в течение {minutes} мин!",
        "en": "💳 Payment created!\n\n🏦 To card: ****{card_last4}\n💰 Amount: <b>{amount}</b> "
        "so'm (exactly this amount)\n🆔 Order: {order_id}\n\n⏳ Transfer within {minutes} min!",
    },
    "purchase_paid": {
        "uz": "✅ To'lov qabul qilindi. Obuna «{tariff}» {expires_at} gacha uzaytirildi.",
        "ru": "✅ Оплата получена. Подписка «{tariff}» продлена до {expires_at}.",
        "en": "✅ Payment received. Your «{tariff}» subscription runs until {expires_at}.",
    },
    "mailbox_auth_failed": {
        "uz": "🔴 {gmail}: Gmail App parol ishlamayapti, to'lovlar tasdiqlanmaydi. Yangi App "
        "parol yarating va kartani /addcard bilan qayta ulang.",
        "ru": "🔴 {gmail}: пароль приложения Gmail не работает, платежи не подтверждаются. "
        "Создайте новый пароль приложения и подключите карту заново через /addcard.",
        "en": "🔴 {gmail}: the Gmail App Password no longer works, so payments are not "
        "confirmed. Create a new App Password and connect the card again with /addcard.",
    },
    "mailbox_down": {
        "uz": "🟠 {gmail}: pochtaga bir necha daqiqadan beri ulanib bo'lmayapti. "
        "Qayta urinilmoqda.",
        "ru": "🟠 {gmail}: нет соединения с почтой уже несколько минут. Повторяю попытки.",
        "en": "🟠 {gmail}: the mailbox has been unreachable for minutes. Retrying.",
    },
    "mailbox_recovered": {
        "uz": "🟢 {gmail}: pochta yana ishlayapti.",
        "ru": "🟢 {gmail}: почта снова работает.",
        "en": "🟢 {gmail}: the mailbox works again.",
    },
    "credit_unmatched": {
        "uz": "❓ {amount} so'm ****{card_last4} ga tushdi ({occurred_at}), lekin hech bir "
        "to'lovga mos kelmadi. Qaysi buyurtma uchun?",
        "ru": "❓ {amount} сум пришли на ****{card_last4} ({occurred_at}), но не подошли ни к "
        "одному платежу. К какому заказу отнести?",
        "en": "❓ {amount} so'm arrived on ****{card_last4} ({occurred_at}) but matched no "
        "payment. Which order is it for?",
    },
    "credit_ambiguous": {
        "uz": "⚠️ {amount} so'm ****{card_last4} ga tushdi ({occurred_at}) va bir nechta "
        "to'lovga mos keldi. Qaysi biri?",
        "ru": "⚠️ {amount} сум пришли на ****{card_last4} ({occurred_at}) и подходят к "
        "нескольким платежам. К какому?",
        "en": "⚠️ {amount} so'm arrived on ****{card_last4} ({occurred_at}) and fits several "
        "payments. Which one?",
    },
    "no_candidates": {
        "uz": "Mos keladigan kutilayotgan yoki muddati o'tgan buyurtma topilmadi.",
        "ru": "Подходящих ожидающих или просроченных заказов не найдено.",
        "en": "No waiting or expired order could be offered.",
    },
    "candidate_button": {
        "uz": "✅ #{order_id} · {amount} so'm · {status}",
        "ru": "✅ #{order_id} · {amount} сум · {status}",
        "en": "✅ #{order_id} · {amount} so'm · {status}",
    },
    "dismiss_button": {
        "uz": "🙈 Buyurtmasiz deb belgilash",
        "ru": "🙈 Отметить без заказа",
        "en": "🙈 Mark as handled, no order",
    },
    "matched": {
        "uz": "✅ Buyurtma #{order_id} to'landi (qo'lda, bot orqali). Webhook yuboriladi.",
        "ru": "✅ Заказ #{order_id} оплачен (вручную, через бота). Вебхук будет отправлен.",
        "en": "✅ Order #{order_id} is paid (by hand, through the bot). Its webhook is sent.",
    },
    "match_failed": {
        "uz": "❌ Bog'lab bo'lmadi: {detail}",
        "ru": "❌ Не удалось сопоставить: {detail}",
        "en": "❌ Could not match: {detail}",
    },
    "dismissed": {
        "uz": "🙈 Belgilandi: buyurtmasiz.",
        "ru": "🙈 Отмечено: без заказа.",
        "en": "🙈 Marked as handled, no order.",
    },
    "webhook_failing": {
        "uz": "🔴 Webhook {url} javob bermayapti ({count} marta ketma-ket): {error}",
        "ru": "🔴 Вебхук {url} не отвечает ({count} раз подряд): {error}",
        "en": "🔴 Webhook {url} keeps failing ({count} times in a row): {error}",
    },
    "webhook_recovered": {
        "uz": "🟢 Webhook yana ishlayapti.",
        "ru": "🟢 Вебхук снова работает.",
        "en": "🟢 Webhooks are delivered again.",
    },
    "webhook_exhausted": {
        "uz": "⛔ Buyurtma #{order_id} webhooki yetkazilmadi, urinishlar tugadi: {error}. "
        "/api/orders/{order_id}/redeliver bilan qayta yuboring.",
        "ru": "⛔ Вебхук заказа #{order_id} не доставлен, попытки исчерпаны: {error}. "
        "Отправьте заново через /api/orders/{order_id}/redeliver.",
        "en": "⛔ The webhook of order #{order_id} was given up after its last attempt: "
        "{error}. Send it again with /api/orders/{order_id}/redeliver.",
    },
    "quota_80": {
        "uz": "📈 Obuna limitining 80% ishlatildi: {used} / {max}. /subscription",
        "ru": "📈 Использовано 80% лимита подписки: {used} / {max}. /subscription",
        "en": "📈 80% of your subscription's payments are used: {used} / {max}. /subscription",
    },
    "quota_100": {
        "uz": "⛔ Obuna limiti tugadi: {used} / {max}. Yangi to'lovlar 403 oladi. /subscription",
        "ru": "⛔ Лимит подписки исчерпан: {used} / {max}. Новые платежи получают 403. "
        "/subscription",
        "en": "⛔ Your subscription's payments are used up: {used} / {max}. New payments get "
        "403. /subscription",
    },
    "expiring": {
        "uz": "⏰ Obuna {expires_at} da tugaydi. Uzaytirish: /subscription",
        "ru": "⏰ Подписка заканчивается {expires_at}. Продлить: /subscription",
        "en": "⏰ Your subscription ends on {expires_at}. Extend it: /subscription",
    },
    "status_waiting": {"uz": "kutilmoqda", "ru": "ожидает", "en": "waiting"},
    "status_expired": {"uz": "muddati o'tgan", "ru": "просрочен", "en": "expired"},
    "never": {"uz": "hali yo'q", "ru": "ещё нет", "en": "none yet"},
    "error": {
        "uz": "Xatolik: {detail}. Birozdan so'ng qayta urinib ko'ring.",
        "ru": "Ошибка: {detail}. Попробуйте чуть позже.",
        "en": "Something went wrong: {detail}. Try again in a moment.",
    },
}


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def say(language: str | None, key: str, /, **values: object) -> str:
    """The text `key` in `language` (Uzbek when unknown), with `values` HTML-escaped. A value
    wrapped in `Raw` is inserted as is (markup the bot built itself)."""
    entry = TEXTS[key]
    template = entry.get(language or "uz") or entry["uz"]
    safe = {
        name: value.text if isinstance(value, Raw) else html.escape(str(value))
        for name, value in values.items()
    }
    return template.format(**safe)


class Raw:
    """A value `say` inserts without escaping."""

    def __init__(self, text: str) -> None:
        self.text = text


def app_password_steps(language: str | None) -> str:
    return APP_PASSWORD_STEPS.get(language or "uz", APP_PASSWORD_STEPS["uz"])
