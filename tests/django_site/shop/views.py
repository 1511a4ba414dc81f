"""The README's view: save a model and publish its event in one transaction."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from producers.django import publish
from tests.django_site.shop.models import Order


def pay_order(request: HttpRequest, order_id: int) -> JsonResponse:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        order.status = "paid"
        order.save()
        event_id = publish(
            "order.paid",
            {"order": order.pk, "amount": str(order.amount)},
            tenant_id="acme",
            idempotency_key=f"order-{order.pk}-paid",
        )
        if request.POST.get("fail"):  # the tests' way to make the rest of the view fail
            raise RuntimeError("payment provider unreachable")
    return JsonResponse({"order": order.pk, "event": event_id})
