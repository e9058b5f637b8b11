"""The API's routers, one module per resource; the app factory includes them."""
