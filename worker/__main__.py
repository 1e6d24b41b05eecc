from app.core.config import Settings
from worker.main import start_worker

raise SystemExit(start_worker(Settings()))
