"""``/api/v1/admin/users``: User Management (see ``bridge.admin.users``)."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from bridge.admin import users as logic
from bridge.auth import requires_role
from bridge.schemas.admin import AddUserSchema, UserListSchema, UserSearchArgsSchema
from bridge.web import current_runtime

blp = Blueprint(
    "admin_users",
    __name__,
    url_prefix="/api/v1/admin",
    description="User Management: who holds the ActiveCampaign User security role",
)


@blp.route("/users", methods=["GET"])
@blp.response(200, UserListSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def list_users():
    return logic.list_users(current_runtime(), g.user)


@blp.route("/users/search", methods=["GET"])
@blp.arguments(UserSearchArgsSchema, location="query", error_status_code=400)
@blp.response(200, UserListSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def search_users(args):
    return logic.search(current_runtime(), g.user, args["q"])


@blp.route("/users", methods=["POST"])
@blp.arguments(AddUserSchema, error_status_code=400)
@blp.response(200, UserListSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def add_user(body):
    return logic.add_user(current_runtime(), g.user, str(body["systemuser_id"]))


@blp.route("/users/<uuid:systemuser_id>", methods=["DELETE"])
@blp.response(200, UserListSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def remove_user(systemuser_id):
    return logic.remove_user(current_runtime(), g.user, str(systemuser_id))
