"""A small service on the skeleton, for the skeleton's own tests: a database, Valkey, a body model."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field
from sqlalchemy import text

from onair.service import (
    ApiError,
    RuntimeSettings,
    Service,
    ServiceSpec,
    create_service_app,
    responses,
    service_of,
)

MIGRATIONS = str(FsPath(__file__).parents[1] / "foundation" / "demo_migrations")

router = APIRouter()

# Bounded: an unbounded int reaches the database and overflows its INTEGER (a 500, found by the
# contract check).
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class NewItem(BaseModel):
    name: str = Field(min_length=1, max_length=20, pattern=r"^[a-z]+$")


class Item(BaseModel):
    id: int
    name: str


@router.post("/items", status_code=201, responses=responses(409))
async def create_item(body: NewItem, svc: Service = Depends(service_of)) -> Item:
    async with svc.session() as session, session.begin():
        taken = (
            await session.execute(text("SELECT 1 FROM demo_item WHERE name = :n"), {"n": body.name})
        ).first()
        if taken:
            raise ApiError(409, "taken", f"an item named {body.name!r} exists")
        row = await session.execute(
            text("INSERT INTO demo_item (name) VALUES (:n) RETURNING id"), {"n": body.name}
        )
        return Item(id=row.scalar_one(), name=body.name)


@router.get("/items/{item_id}", responses=responses(404))
async def get_item(item_id: ItemId, svc: Service = Depends(service_of)) -> Item:
    async with svc.session() as session:
        row = (
            await session.execute(text("SELECT id, name FROM demo_item WHERE id = :i"), {"i": item_id})
        ).first()
    if row is None:
        raise ApiError(404, "not_found", f"no item {item_id}")
    return Item(id=row[0], name=row[1])


@router.delete("/items/{item_id}", status_code=204, responses=responses(404))
async def delete_item(item_id: ItemId, svc: Service = Depends(service_of)) -> None:
    async with svc.session() as session, session.begin():
        result = await session.execute(text("DELETE FROM demo_item WHERE id = :i"), {"i": item_id})
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise ApiError(404, "not_found", f"no item {item_id}")


@router.get("/counter")
async def counter(svc: Service = Depends(service_of)) -> dict[str, int]:
    assert svc.valkey is not None
    return {"value": int(await svc.valkey.raw.incr(svc.valkey.key("counter")))}


SPEC = ServiceSpec(name="sample", migrations=MIGRATIONS, valkey=True, tracking=True, identity=False)


def create_app(settings: RuntimeSettings | None = None) -> object:
    started: list[str] = []

    def setup(svc: Service) -> None:
        async def hook(s: Service) -> None:
            started.append(s.name)

        svc.on_start(hook)
        svc.state["started"] = started

    return create_service_app(SPEC, [router], settings=settings, setup=setup, configure_logs=False)
