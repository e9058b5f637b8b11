"""AgentKit's registration webhook (contract section 1). No API key: with
``OPSCORE_WEBHOOK_SECRET`` set, the HMAC signature over the raw body authenticates it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from opscore import webhook
from opscore.api.deps import ServicesDep
from opscore.api.schemas import WebhookNotification, WebhookResult
from opscore.lifecycle import AgentRegistration
from opscore.logging import bind_correlation

__all__ = ["router"]

router = APIRouter(tags=["webhook"])


@router.post(
    "/v1/opscore/internal/agent/notify",
    response_model=WebhookResult,
    summary="AgentKit registration webhook (REGISTER / DEREGISTER)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/WebhookNotification"}}
            },
        }
    },
)
async def agent_notify(
    request: Request,
    services: ServicesDep,
    signature: Annotated[str | None, Header(alias=webhook.SIGNATURE_HEADER)] = None,
    timestamp: Annotated[str | None, Header(alias=webhook.TIMESTAMP_HEADER)] = None,
) -> WebhookResult:
    # The signature covers the exact bytes sent, so parse only after verifying them.
    body = await request.body()
    secret = services.settings.webhook_secret
    if secret:
        webhook.verify(
            secret,
            signature=signature,
            timestamp=timestamp,
            body=body,
            max_skew_s=services.settings.webhook_max_skew_s,
        )
    try:
        event = WebhookNotification.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc
    details = event.agent_details
    bind_correlation(agentId=details.agent_id)
    lifecycle = services.lifecycle
    if event.event_type == "DEREGISTER":
        await lifecycle.deregister(details.agent_id)
        return WebhookResult(status="deregistered", agent_id=details.agent_id)
    if details.agent_name is None:
        raise RequestValidationError(
            [
                {
                    "type": "missing",
                    "loc": ("body", "agent_details", "agentName"),
                    "msg": "Field required for a REGISTER event",
                    "input": None,
                }
            ]
        )
    registration = AgentRegistration(
        name=details.agent_name,
        agent_id=details.agent_id,
        version=details.version,
        capabilities=tuple(details.capabilities),
        contact_endpoint=details.contact_endpoint,
        metadata=details.metadata,
    )
    agent, _created = await lifecycle.register(registration, source="webhook")
    return WebhookResult(status="registered", agent_id=agent.agent_id)
