"""C3 authentication data is refused wherever it appears, by key path, never echoing the value."""

from __future__ import annotations

import pytest

from crmbridge.canonical.c3 import c3_rule, find_c3, refuse_c3
from crmbridge.core.errors import ForbiddenDataError, RecordError


@pytest.mark.parametrize("key", [
    "password", "Password", "loginPassword", "login_pwd", "passwd", "PIN", "pin", "card_pin", "pin_block",
    "PinBlock", "cvv", "CVV2", "cvc", "cvn2", "card_cvv", "Track1", "track2_data", "TRACK_2", "card_expiry",
    "cardExpiryDate", "card_exp_date", "otp", "sms_code", "smsCode", "verification_code", "field_pwd__c",
    "Password__c", "密码", "交易密码", "查询密码", "登录密码", "短信验证码", "卡有效期", "磁道信息",
    "fingerprint_template", "指纹特征", "iccData", "passcode",
])
def test_c3_keys_are_recognised(key: str) -> None:
    assert c3_rule(key) is not None, key


@pytest.mark.parametrize("key", [
    "pinyin", "name_pinyin", "shipping", "opinion", "spinner", "expires_on", "id_expiry_date", "证件有效期至",
    "postcode", "cid", "customer_id", "device_fingerprint", "biometric_consent", "mobile", "email", "typing",
    "mapping", "option", "top_up", "cover", "CVR", "passport_no",
])
def test_look_alike_keys_are_not_refused(key: str) -> None:
    assert c3_rule(key) is None, key


def test_refuse_names_key_path_never_value() -> None:
    record = {
        "id": "4150868000000224005",
        "Last_Name": "张",
        "Accounts": [{"no": "6222020200112233445"}, {"no": "6222", "card": {"cvv2": "987", "PIN": "123456"}}],
    }
    with pytest.raises(ForbiddenDataError) as err:
        refuse_c3(record, "zoho:Contacts/4150868000000224005")
    exc = err.value
    assert isinstance(exc, RecordError)  # goes to the dead letters, the run goes on
    assert exc.code == "c3_data"
    assert exc.field == "Accounts[1].card.cvv2"
    assert exc.where == "zoho:Contacts/4150868000000224005"
    assert "Accounts[1].card.PIN" in exc.message
    assert "987" not in str(exc) and "123456" not in str(exc)


def test_nested_lists_and_chinese_keys() -> None:
    record = {"data": [{"客户信息": {"交易密码": "888888"}}]}
    assert find_c3(record) == [("data[0].客户信息.交易密码", "substring:密码")]


def test_keys_without_data_are_tolerated() -> None:
    record = {"otp_verified": True, "has_pin": False, "password": None, "pin": "", "name": "x"}
    assert find_c3(record) == []
    refuse_c3(record, "t")   # raises on a finding
    assert find_c3({**record, "pin": "1234"}) != []   # the same key with a value is a finding


def test_clean_record_passes() -> None:
    record = {"name": "张三", "mobile": "13812345678", "pinyin": "ZHANG San", "expires_on": "2030-01-01",
              "addresses": [{"postcode": "100020"}]}
    assert find_c3(record) == []   # "pinyin" contains "pin": a name spelling is no PIN
    refuse_c3(record, "t")


def test_many_offenders_are_summarised() -> None:
    record = {f"pwd_{i}": "x" for i in range(15)}
    with pytest.raises(ForbiddenDataError) as err:
        refuse_c3(record, "t")
    assert "and 5 more" in err.value.message


def test_without_c3_withholds_every_c3_value_and_keeps_the_rest() -> None:
    """What a dead letter keeps of a record refused for C3 data: everything but the C3 values (a key, a name/value
    pair, nested in lists), so retrying it later needs no PIN stored anywhere."""
    from crmbridge.canonical.c3 import C3_WITHHELD, find_c3, without_c3

    record = {"CUSTNO": "000000099", "CARD_PIN": "2468", "Custpersonal": {"CVV2": "123", "MOBNUM": "13800138000"},
              "UDFDETAILS": [{"FLDNAM": "CARD_PIN", "FLDVAL": "9753"}, {"FLDNAM": "AUM_CCY", "FLDVAL": "CNY"}]}
    kept = without_c3(record)
    assert find_c3(kept) == [] and "2468" not in str(kept) and "9753" not in str(kept) and "123'" not in str(kept)
    assert kept["CARD_PIN"] == kept["Custpersonal"]["CVV2"] == kept["UDFDETAILS"][0]["FLDVAL"] == C3_WITHHELD
    assert kept["CUSTNO"] == "000000099" and kept["Custpersonal"]["MOBNUM"] == "13800138000"
    assert kept["UDFDETAILS"][1] == {"FLDNAM": "AUM_CCY", "FLDVAL": "CNY"} and record["CARD_PIN"] == "2468"
