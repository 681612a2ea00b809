//! Tests of the value generators: generated numbers become values of the field's type.

use prost_reflect::Value;

use super::Scalar;

#[test]
fn integers_round_and_clamp() {
    let i8t = Scalar::parse("int8").expect("int8");
    assert_eq!(i8t.value(300.0), Value::I32(127));
    assert_eq!(i8t.value(-300.0), Value::I32(-128));
    assert_eq!(i8t.value(2.5), Value::I32(3));
    assert_eq!(i8t.value(f64::NAN), Value::I32(0));
    assert_eq!(
        Scalar::parse("uint16").expect("u16").value(-5.0),
        Value::U32(0)
    );
    assert_eq!(
        Scalar::parse("int64").expect("i64").value(1e30),
        Value::I64(i64::MAX)
    );
    assert_eq!(
        Scalar::parse("bool").expect("bool").value(1.0),
        Value::Bool(true)
    );
    assert_eq!(
        Scalar::parse("string").expect("s").value(3.0),
        Value::String("3".into())
    );
}
