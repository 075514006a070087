"""The example's routes: a public page, a @login_required page, an admin-only page, an API,
and Django's admin (for users whose roles make them staff), signed in and out by the adapter
(``admin_urls``: its logout ends the adapter's session, others than staff get a 403)."""

from __future__ import annotations

from django.urls import path

from adapter.integrations.django import admin_urls
from examples.django_app import views

urlpatterns = [
    path("", views.home),
    path("private", views.private),
    path("staff", views.staff),
    path("api/whoami", views.whoami),
    path("admin/", admin_urls()),  # admin.site.urls, with the adapter's login and logout
]
