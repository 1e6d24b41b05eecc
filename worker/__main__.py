from app.core.config import Settings
from worker.main import run_worker

run_worker(Settings())
