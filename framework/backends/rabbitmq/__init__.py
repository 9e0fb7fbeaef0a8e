"""``amqp://`` and ``amqps://``: the RabbitMQ backend (aio-pika); see docs/backends/rabbitmq.md."""

from .backend import RabbitMQBackend

__all__ = ["RabbitMQBackend"]
