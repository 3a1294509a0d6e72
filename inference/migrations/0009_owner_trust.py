"""Owner trust records, the platform beat (lease reaper liveness) and the worker's own error text on jobs."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ('inference', '0008_platform_counts'),
    ]

    operations = [
        migrations.CreateModel(
            name='OwnerTrust',
            fields=[
                ('owner', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='worker_trust', serialize=False, to=settings.AUTH_USER_MODEL)),
                ('banned_at', models.DateTimeField(blank=True, null=True)),
                ('paused_until', models.DateTimeField(blank=True, null=True)),
                ('pauses_window_start', models.DateTimeField(blank=True, null=True)),
                ('pauses_in_window', models.PositiveIntegerField(default=0)),
            ],
            options={
                'verbose_name': "worker owner's trust record",
            },
        ),
        migrations.CreateModel(
            name='PlatformBeat',
            fields=[
                ('name', models.CharField(max_length=32, primary_key=True, serialize=False)),
                ('at', models.DateTimeField()),
            ],
        ),
        migrations.AddField(
            model_name='job',
            name='worker_message',
            field=models.TextField(blank=True, db_default='', default=''),
        ),
    ]
