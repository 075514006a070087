"""A minimal Django project behind the adapter (see settings.py, wsgi.py and views.py)."""
