"""A worker's `done` is settled by the server process that holds its socket: a stream's end does not
depend on Celery or its broker."""

import time

from billing.models import Hold
from inference.models import Job
from tests.inference.platform import HttpCall, WorkerSocket, run
from tests.support.factories import SMOLLM2


def test_a_done_ends_the_stream_and_settles_with_no_celery_worker_running(platform, operator, customer):
    from sogni_platform.celery import app

    app.conf.task_always_eager = False  # tasks would go to the broker, and no Celery worker reads it
    platform.CELERY_TASK_ALWAYS_EAGER = False
    platform.JOB_QUIET_CHECK_SECONDS = 60  # the request must not need its own re-read either

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        body = {"model": SMOLLM2, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
        call = HttpCall("/v1/chat/completions", key=customer.key, body=body)
        reply = await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "Hello")
        await worker.done(job["job_id"], completion_tokens=1, prompt_tokens=5)
        done_at = time.monotonic()
        await worker.disconnect(code=1000)  # at once: the settlement it started still completes
        await call.finish(timeout=5)
        return reply, time.monotonic() - done_at

    reply, ended_after = run(scenario)
    assert ended_after < 2
    assert reply.events()[-1] == "[DONE]" and reply.content() == "Hello"
    job = Job.objects.get()
    assert job.status == Job.Status.COMPLETED
    assert Hold.objects.get(job_id=str(job.pk)).status == Hold.Status.SETTLED
