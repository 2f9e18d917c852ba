from shared.broker.base import Broker, Delivery, DeliveryHandler, OutgoingMessage, Subscription

__all__ = ["Broker", "Delivery", "DeliveryHandler", "OutgoingMessage", "Subscription"]
