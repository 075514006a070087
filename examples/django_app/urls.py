"""The example's routes: a public page, a @login_required page, an admin-only page, an API,
and Django's admin (for users whose roles make them staff)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from examples.django_app import views

urlpatterns = [
    path("", views.home),
    path("private", views.private),
    path("staff", views.staff),
    path("api/whoami", views.whoami),
    path("admin/", admin.site.urls),
]
