"""Static files of the web page served at GET / (index.html, app.js, style.css)."""
