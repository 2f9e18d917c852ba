from shared.broker.base import Broker, BrokerMessage, Delivery, DeliveryHandler, Subscription

__all__ = ["Broker", "BrokerMessage", "Delivery", "DeliveryHandler", "Subscription"]
