from aiservice.cli import app

app(prog_name="aiservice")
