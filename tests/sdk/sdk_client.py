"""Runs inside the official SDK's own venv (global-open-sdk-python): never imports pos.

Usage: sdk_client.py CONFIG.json. CONFIG names the gateway URL, client id, the
merchant's PKCS#1 private key, Alipay's public key, a payment code, and a
signed request of ours to verify. Prints one JSON object: what the SDK got
back from each call, what its signature tool says of our signature, and a
signature of its own for us to verify.
"""

import json
import sys

from com.alipay.ams.api.default_alipay_client import DefaultAlipayClient
from com.alipay.ams.api.model.amount import Amount
from com.alipay.ams.api.model.merchant import Merchant
from com.alipay.ams.api.model.order import Order
from com.alipay.ams.api.model.payment_factor import PaymentFactor
from com.alipay.ams.api.model.payment_method import PaymentMethod
from com.alipay.ams.api.model.product_code_type import ProductCodeType
from com.alipay.ams.api.model.store import Store
from com.alipay.ams.api.request.pay.alipay_pay_query_request import AlipayPayQueryRequest
from com.alipay.ams.api.request.pay.alipay_pay_request import AlipayPayRequest
from com.alipay.ams.api.request.pay.alipay_refund_request import AlipayRefundRequest
from com.alipay.ams.api.request.pay.order_code_payment_request import OrderCodePaymentRequest
from com.alipay.ams.api.tools import signature_tool


def main():
    with open(sys.argv[1]) as fh:
        cfg = json.load(fh)
    client = DefaultAlipayClient(cfg["url"], cfg["client_id"], cfg["merchant_private_key"],
                                 cfg["alipay_public_key"])
    out = {}

    pay = AlipayPayRequest()
    pay.product_code = ProductCodeType.IN_STORE_PAYMENT
    pay.payment_request_id = cfg["request_id"]
    amount = Amount("SGD", "1250")
    pay.payment_amount = amount
    order = Order()
    order.reference_order_id = cfg["request_id"]
    order.order_description = "Coffee x2"
    order.order_amount = amount
    pay.order = order
    method = PaymentMethod()
    method.payment_method_type = "CONNECT_WALLET"
    method.payment_method_id = cfg["code"]
    pay.payment_method = method
    factor = PaymentFactor()
    factor.in_store_payment_scenario = "PaymentCode"   # the documented spelling (the SDK's enum says PAYMENTCODE)
    pay.payment_factor = factor
    out["pay"] = json.loads(client.execute(pay))

    query = AlipayPayQueryRequest()
    query.payment_request_id = cfg["request_id"]
    out["inquiryPayment"] = json.loads(client.execute(query))

    refund = AlipayRefundRequest()
    refund.refund_request_id = cfg["request_id"] + "-R1"
    refund.payment_id = out["pay"].get("paymentId", "")
    refund.refund_amount = Amount("SGD", "500")
    out["refund"] = json.loads(client.execute(refund))

    # The merchant-presented QR as the SDK builds it (Order Code Payment): our sandbox answers the code.
    store = Store()
    store.reference_store_id, store.store_name, store.store_mcc = "S01", "Sandbox Coffee", "5812"
    merchant = Merchant()
    merchant.reference_merchant_id, merchant.merchant_mcc, merchant.merchant_name = "M01", "5812", "Sandbox"
    merchant.store = store
    qr_order = Order()
    qr_order.reference_order_id = cfg["request_id"] + "-QR"
    qr_order.order_description = "Iced tea"
    qr_order.order_amount = Amount("SGD", "990")
    qr_order.merchant = merchant
    qr = OrderCodePaymentRequest(cfg["request_id"] + "-QR", qr_order, "SGD", "990")
    out["orderCode"] = json.loads(client.execute(qr))

    ours = cfg["ours"]   # a request our client signed: the SDK's signature tool checks it
    out["ours_verified"] = signature_tool.verify("POST", ours["path"], ours["client_id"], ours["time"],
                                                 ours["body"], ours["signature"], cfg["merchant_public_key"])
    out["theirs"] = {"path": "/ams/api/v1/payments/inquiryPayment", "client_id": cfg["client_id"],
                     "time": "2024-05-01T12:00:00+08:00", "body": '{\n   "paymentRequestId": "X1"\n}'}
    out["theirs"]["signature"] = signature_tool.sign("POST", out["theirs"]["path"], cfg["client_id"],
                                                     out["theirs"]["time"], out["theirs"]["body"],
                                                     cfg["merchant_private_key"])
    print(json.dumps(out))


main()
