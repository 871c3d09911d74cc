"""The web page served by the app (src/crossrec/serve/web/: plain HTML, JS and CSS, no build step)
and the two small endpoints it needs beyond the API: example user ids, and item posters.

A poster is streamed only when the item table of the bundle names one (the loader's absolute path,
in the manifest-checked items.jsonl); no path or URL from a request is ever opened, and items added
while serving carry a flag, not a path, so they have none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from crossrec.serve.state import ServingState

WEB_DIR = Path(__file__).with_name("web")
POSTER_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
}


class UserList(BaseModel):
    users: list[str]
    total: int


def add_page(app: FastAPI, state: ServingState) -> None:
    """GET / (the page), /static/* (its script and style), GET /users, GET /items/{item_id}/poster."""
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/users", response_model=UserList)
    def users(limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> UserList:
        """The first `limit` user ids (examples for the page) and how many users there are."""
        ids = state.user_ids
        return UserList(users=ids[:limit], total=len(ids))

    @app.get(
        "/items/{item_id}/poster",
        response_class=FileResponse,
        responses={
            200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "the poster"},
            404: {"description": "unknown id, or the item has no poster"},
        },
    )
    def poster(item_id: str) -> FileResponse:
        row = state.items[state.item(item_id)]
        named = row.get("image")
        file = Path(named) if isinstance(named, str) and named else None
        media = POSTER_TYPES.get(file.suffix.lower()) if file is not None else None
        if file is None or media is None or not file.is_file():
            raise HTTPException(404, f"item '{item_id}' has no poster")
        return FileResponse(file, media_type=media, headers={"Cache-Control": "max-age=3600"})
