from shared.consumer.runtime import Consumer, Handler, MessageContext
from shared.consumer.transaction import Transaction, TransactionFactory

__all__ = ["Consumer", "Handler", "MessageContext", "Transaction", "TransactionFactory"]
