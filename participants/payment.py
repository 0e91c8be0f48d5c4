"""Payment: a balance per customer in integer minor units; charge, and refund exactly that.

Rules (business failures, answered failed and not retryable):
- a payment method whose name starts with "declined" (e.g. "declined_card") is
  declined, so demos and tests can ask for a decline without a card network;
- an unknown customer, or a balance below the amount due (`ProcessPayment.amount_due`:
  `amount`, or the order total);
- an amount above 2**53 minor units, which Lua numbers cannot compare exactly.
The charge recorded is what the refund gives back, whatever `original_result` says.
"""

from __future__ import annotations

from participants import keys, lua_parts
from saga_worker import Apply, JsonObject, Kind, Participant, Refuse, Route, Verdict
from schemas import ProcessPayment, RefundPayment
from schemas import topics as t

DECLINED_PREFIX = "declined"
MAX_AMOUNT = 2**53


def is_declined(payment_method: str | None) -> bool:
    return payment_method is not None and payment_method.lower().startswith(DECLINED_PREFIX)


def prepare_charge(command: ProcessPayment) -> Verdict:
    if is_declined(command.payment_method):
        return Refuse("payment_declined", f"payment method {command.payment_method} was declined")
    amount = command.amount_due
    if amount > MAX_AMOUNT:
        return Refuse("amount_too_large", f"amount {amount} exceeds {MAX_AMOUNT} minor units")
    effect: JsonObject = {
        "saga_id": command.saga_id,
        "customer_id": command.customer_id,
        "amount": str(amount),  # a string, so Lua hands it to HINCRBY exactly
    }
    result: JsonObject = {
        "payment_id": f"pay:{command.saga_id}",
        "customer_id": command.customer_id,
        "amount": amount,
    }
    if command.currency is not None:
        result["currency"] = command.currency
    return Apply(args=effect, result=result, effect=effect)


def _domain_keys(prefix: str) -> tuple[str, ...]:
    k = keys.payment(prefix)
    return (k.balances, k.charges, k.charges_written, k.settled)


PAYMENT = Participant(
    name=keys.PAYMENT,
    routes={
        t.PROCESS_PAYMENT: Route(ProcessPayment, Kind.ACTION, prepare_charge),
        t.REFUND_PAYMENT: Route(RefundPayment, Kind.COMPENSATION),
    },
    script=lua_parts("settling.lua", "payment.lua"),
    domain_keys=_domain_keys,
)
