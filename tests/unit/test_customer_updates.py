"""What waiting customers are told, as pure functions: the wait phrase, the e-mail acknowledgement, the phone
announcement, and who never gets an automatic mail."""

from __future__ import annotations

from switchboard.email.ack import ack_language, ack_message_id, ack_text, compose_ack
from switchboard.email.loops import may_auto_reply
from switchboard.email.settings import EmailSettings
from switchboard.email.threads import Contact
from switchboard.phone.announce import announcement_text
from switchboard.state.figures import Estimate
from switchboard.state.waiting import QueuePlace, told_wait_s, wait_phrase


def test_a_wait_is_told_rounded_up_in_the_customers_language() -> None:
    assert wait_phrase(20, "en") == "about 1 minute"
    assert wait_phrase(170, "zh") == "约 3 分钟"
    assert wait_phrase(11 * 60, "en") == "about 15 minutes"
    assert wait_phrase(61 * 60, "zh") == "约 2 小时"
    assert wait_phrase(3 * 86400, "en") == "about 3 days"


def test_the_told_wait_is_the_routers_estimate_else_the_fallback_per_position() -> None:
    estimate = Estimate(seconds_per_position=40, queue_length=5, at_ms=1)
    assert told_wait_s(estimate, 3, 999) == 120
    assert told_wait_s(estimate, None, 999) == 240, "a newcomer waits behind the whole queue"
    assert told_wait_s(None, 3, 30) == 90


CONTACT = Contact("buyer@customer.example", "service@shop-a.example", "退款进度", "m2@c", ["m1@c", "m2@c"], "en")


def test_the_acknowledgement_is_threaded_marked_automatic_and_says_the_expected_time() -> None:
    settings = EmailSettings(smtp_hostname="mail.switchboard.test")
    place = QueuePlace("email-1", "after_sales", "email", 4, 25 * 60)
    mail = compose_ack("shop-a", place, CONTACT, "en", settings)
    assert mail["To"] == "buyer@customer.example" and mail["From"] == "service@shop-a.example"
    assert mail["Subject"] == "Re: 退款进度"
    assert mail["In-Reply-To"] == "<m2@c>" and mail["References"] == "<m1@c> <m2@c>"
    assert (
        mail["Message-ID"]
        == ack_message_id("shop-a", "email-1", settings)
        == ("<ack.email-1.shop-a@mail.switchboard.test>")
    )
    assert mail["Auto-Submitted"] == "auto-replied"
    body = mail.get_content()
    assert "3 customers are ahead of you" in body and "within about 25 minutes" in body


def test_the_acknowledgement_speaks_the_customers_language_else_the_shops() -> None:
    settings = EmailSettings(email_ack_languages={"shop-b": "en"}, email_ack_default_language="zh")
    assert ack_language(CONTACT, "shop-a", settings) == "en"
    japanese = Contact("a@b.example", "", "", "", [], "ja")
    assert ack_language(japanese, "shop-a", settings) == "en"
    unknown = Contact("a@b.example", "", "", "", [], "")
    assert ack_language(unknown, "shop-b", settings) == "en"
    assert ack_language(unknown, "shop-a", settings) == "zh"
    text = ack_text(QueuePlace("email-1", "g", "email", 1, 7200), "zh")
    assert "您是下一位" in text and "预计约 2 小时内回复您" in text


def test_no_automatic_mail_to_robots_or_no_reply_senders() -> None:
    assert may_auto_reply("Buyer <buyer@customer.example>")
    for robot in (
        "MAILER-DAEMON@x.example",
        "postmaster@x.example",
        "noreply@shop.example",
        "no-reply@x.example",
        "do_not_reply+123@x.example",
        "donotreply@x.example",
        "",
    ):
        assert not may_auto_reply(robot), robot


def test_the_phone_announcement_says_the_place_and_the_wait() -> None:
    assert announcement_text(3, 240, "zh") == "您好，目前咨询较多，您前面还有 2 位顾客，预计等待约 4 分钟，请不要挂机。"
    assert "you are next in line" in announcement_text(1, 30, "en")
    assert "number 5 in the queue" in announcement_text(5, 600, "en") and "about 10 minutes" in announcement_text(
        5, 600, "en"
    )
