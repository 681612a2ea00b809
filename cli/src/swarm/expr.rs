//! Generator expressions of swarm fields (Mir's table): numbers, `+ - * / % ^`,
//! parentheses, unary minus, the functions `sin cos tan abs sqrt pow exp log log10 floor
//! ceil round min max rand` and the constants `pi` (or `π`), `e` and `t` (seconds since
//! the swarm started). `rand` alone is uniform in [0, 1); `rand(a, b)` in [a, b).
//!
//! A recursive-descent parser turns the text into a tree once; evaluating it is cheap.
//! Errors name the 1-based character position.

use std::fmt;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Num(f64),
    T,
    Neg(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Sin,
    Cos,
    Tan,
    Abs,
    Sqrt,
    Pow,
    Exp,
    Log,
    Log10,
    Floor,
    Ceil,
    Round,
    Min,
    Max,
    Rand,
}

/// Functions: name, value, accepted argument counts.
const FUNCS: &[(&str, Func, &[usize])] = &[
    ("sin", Func::Sin, &[1]),
    ("cos", Func::Cos, &[1]),
    ("tan", Func::Tan, &[1]),
    ("abs", Func::Abs, &[1]),
    ("sqrt", Func::Sqrt, &[1]),
    ("pow", Func::Pow, &[2]),
    ("exp", Func::Exp, &[1]),
    ("log", Func::Log, &[1]),
    ("log10", Func::Log10, &[1]),
    ("floor", Func::Floor, &[1]),
    ("ceil", Func::Ceil, &[1]),
    ("round", Func::Round, &[1]),
    ("min", Func::Min, &[2]),
    ("max", Func::Max, &[2]),
    ("rand", Func::Rand, &[0, 2]),
];

/// Why an expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// 1-based character position.
    pub position: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.position, self.message)
    }
}

impl std::error::Error for ExprError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Op(char),
    LParen,
    RParen,
    Comma,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(n) => format!("number {n}"),
            Tok::Ident(i) => format!("{i:?}"),
            Tok::Op(c) => format!("'{c}'"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::End => "the end of the expression".into(),
        }
    }
}

/// Tokens with their 1-based positions.
fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            // An exponent: 1e3, 2.5E-2.
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let s: String = chars[start..i].iter().collect();
            let n = s.parse::<f64>().map_err(|_| ExprError {
                position: pos,
                message: format!("invalid number {s:?}"),
            })?;
            out.push((Tok::Num(n), pos));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), pos));
        } else {
            let tok = match c {
                '+' | '-' | '*' | '/' | '%' | '^' => Tok::Op(c),
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ',' => Tok::Comma,
                other => {
                    return Err(ExprError {
                        position: pos,
                        message: format!("unexpected character {other:?}"),
                    })
                }
            };
            out.push((tok, pos));
            i += 1;
        }
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map(|(t, _)| t).unwrap_or(&Tok::End)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map(|(_, p)| *p).unwrap_or(0)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        self.i += 1;
        t
    }

    fn error<T>(&self, message: String) -> Result<T, ExprError> {
        Err(ExprError {
            position: self.pos(),
            message,
        })
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ExprError> {
        if *self.peek() == tok {
            self.i += 1;
            Ok(())
        } else {
            let found = self.peek().describe();
            self.error(format!("expected {what}, found {found}"))
        }
    }

    // expr := term (('+' | '-') term)*
    fn expr(&mut self) -> Result<Node, ExprError> {
        let mut left = self.term()?;
        loop {
            let op = match self.peek() {
                Tok::Op('+') => Op::Add,
                Tok::Op('-') => Op::Sub,
                _ => return Ok(left),
            };
            self.i += 1;
            let right = self.term()?;
            left = Node::Bin(op, Box::new(left), Box::new(right));
        }
    }

    // term := unary (('*' | '/' | '%') unary)*
    fn term(&mut self) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Op('*') => Op::Mul,
                Tok::Op('/') => Op::Div,
                Tok::Op('%') => Op::Rem,
                _ => return Ok(left),
            };
            self.i += 1;
            let right = self.unary()?;
            left = Node::Bin(op, Box::new(left), Box::new(right));
        }
    }

    // unary := ('-' | '+') unary | power
    fn unary(&mut self) -> Result<Node, ExprError> {
        match self.peek() {
            Tok::Op('-') => {
                self.i += 1;
                Ok(Node::Neg(Box::new(self.unary()?)))
            }
            Tok::Op('+') => {
                self.i += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    // power := primary ('^' unary)?   (right associative: 2^3^2 = 2^9; -2^2 = -4)
    fn power(&mut self) -> Result<Node, ExprError> {
        let base = self.primary()?;
        if *self.peek() == Tok::Op('^') {
            self.i += 1;
            let exp = self.unary()?;
            return Ok(Node::Bin(Op::Pow, Box::new(base), Box::new(exp)));
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let pos = self.pos();
        match self.next() {
            Tok::Num(n) => Ok(Node::Num(n)),
            Tok::LParen => {
                let inner = self.expr()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(inner)
            }
            Tok::Ident(name) => self.ident(&name, pos),
            other => {
                self.i -= 1;
                self.error(format!(
                    "expected a number, a name or '(', found {}",
                    other.describe()
                ))
            }
        }
    }

    fn ident(&mut self, name: &str, pos: usize) -> Result<Node, ExprError> {
        match name {
            "pi" | "π" => return Ok(Node::Num(std::f64::consts::PI)),
            "e" => return Ok(Node::Num(std::f64::consts::E)),
            "t" => return Ok(Node::T),
            _ => {}
        }
        let Some((_, func, arities)) = FUNCS.iter().find(|(n, _, _)| *n == name) else {
            let known: Vec<&str> = FUNCS.iter().map(|(n, _, _)| *n).collect();
            return Err(ExprError {
                position: pos,
                message: format!(
                    "unknown name {name:?}; constants: pi, π, e, t; functions: {}",
                    known.join(", ")
                ),
            });
        };
        let mut args = Vec::new();
        if *self.peek() == Tok::LParen {
            self.i += 1;
            if *self.peek() != Tok::RParen {
                loop {
                    args.push(self.expr()?);
                    if *self.peek() == Tok::Comma {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
            }
            self.expect(Tok::RParen, "',' or ')'")?;
        } else if !arities.contains(&0) {
            return self.error(format!("expected '(' after {name}"));
        }
        if !arities.contains(&args.len()) {
            let want: Vec<String> = arities.iter().map(|a| a.to_string()).collect();
            return Err(ExprError {
                position: pos,
                message: format!(
                    "{name} takes {} argument(s), got {}",
                    want.join(" or "),
                    args.len()
                ),
            });
        }
        Ok(Node::Call(*func, args))
    }
}

impl Expr {
    /// Parses an expression.
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let toks = lex(text)?;
        let mut p = Parser { toks, i: 0 };
        if *p.peek() == Tok::End {
            return p.error("the expression is empty".into());
        }
        let root = p.expr()?;
        if *p.peek() != Tok::End {
            let found = p.peek().describe();
            return p.error(format!("expected an operator, found {found}"));
        }
        Ok(Expr { root })
    }

    /// The value at time `t` (seconds), drawing random numbers from `rng`.
    pub fn eval(&self, t: f64, rng: &mut impl rand::Rng) -> f64 {
        eval(&self.root, t, rng)
    }
}

fn eval(node: &Node, t: f64, rng: &mut impl rand::Rng) -> f64 {
    match node {
        Node::Num(n) => *n,
        Node::T => t,
        Node::Neg(n) => -eval(n, t, rng),
        Node::Bin(op, a, b) => {
            let (a, b) = (eval(a, t, rng), eval(b, t, rng));
            match op {
                Op::Add => a + b,
                Op::Sub => a - b,
                Op::Mul => a * b,
                Op::Div => a / b,
                Op::Rem => a % b,
                Op::Pow => a.powf(b),
            }
        }
        Node::Call(f, args) => {
            let values: Vec<f64> = args.iter().map(|a| eval(a, t, rng)).collect();
            let mut v = values.into_iter();
            let mut arg = || v.next().unwrap_or(0.0);
            match f {
                Func::Sin => arg().sin(),
                Func::Cos => arg().cos(),
                Func::Tan => arg().tan(),
                Func::Abs => arg().abs(),
                Func::Sqrt => arg().sqrt(),
                Func::Pow => {
                    let (x, y) = (arg(), arg());
                    x.powf(y)
                }
                Func::Exp => arg().exp(),
                Func::Log => arg().ln(),
                Func::Log10 => arg().log10(),
                Func::Floor => arg().floor(),
                Func::Ceil => arg().ceil(),
                Func::Round => arg().round(),
                Func::Min => arg().min(arg()),
                Func::Max => arg().max(arg()),
                Func::Rand => {
                    let u: f64 = rng.random();
                    if args.is_empty() {
                        u
                    } else {
                        let (lo, hi) = (arg(), arg());
                        lo + u * (hi - lo)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(text: &str, t: f64) -> f64 {
        Expr::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .eval(t, &mut rand::rng())
    }

    fn err(text: &str) -> ExprError {
        Expr::parse(text).expect_err(text)
    }

    #[test]
    fn arithmetic_follows_the_usual_precedence() {
        assert_eq!(val("1 + 2 * 3", 0.0), 7.0);
        assert_eq!(val("(1 + 2) * 3", 0.0), 9.0);
        assert_eq!(val("10 - 4 - 3", 0.0), 3.0);
        assert_eq!(val("2 ^ 3 ^ 2", 0.0), 512.0);
        assert_eq!(val("-2 ^ 2", 0.0), -4.0);
        assert_eq!(val("2 ^ -1", 0.0), 0.5);
        assert_eq!(val("--3", 0.0), 3.0);
        assert_eq!(val("7 % 4", 0.0), 3.0);
        assert_eq!(val("1e3 + .5 + 2.5E-1", 0.0), 1000.75);
        assert_eq!(val("8 / 2 / 2", 0.0), 2.0);
    }

    #[test]
    fn functions_constants_and_time() {
        assert!((val("pi", 0.0) - std::f64::consts::PI).abs() < 1e-12);
        assert_eq!(val("π", 0.0), val("pi", 0.0));
        assert!((val("log(e)", 0.0) - 1.0).abs() < 1e-12);
        assert_eq!(val("20 + 5*sin(t)", 0.0), 20.0);
        assert_eq!(val("t/3600", 7200.0), 2.0);
        assert_eq!(val("pow(2, 10)", 0.0), 1024.0);
        assert_eq!(val("min(3, max(1, 2))", 0.0), 2.0);
        assert_eq!(
            val("floor(-1.5) + ceil(1.2) + round(2.5) + abs(-1)", 0.0),
            4.0
        );
        assert_eq!(val("sqrt(16) + log10(1000) + exp(0)", 0.0), 8.0);
        assert_eq!(val("cos(0) + tan(0)", 0.0), 1.0);
        assert!((val("exp(-t/1000) * sin(t)", 1.0) - (-0.001f64).exp() * 1f64.sin()).abs() < 1e-12);
        assert!((val("50 + 20*sin(t/30) + 5*cos(t/10) + rand*2", 0.0) - 55.0).abs() <= 2.0);
    }

    #[test]
    fn rand_is_uniform_in_its_range() {
        let e = Expr::parse("rand").expect("parses");
        let r = Expr::parse("rand(10, 20)").expect("parses");
        let e2 = Expr::parse("100 + rand*20 - 10").expect("parses");
        let mut rng = rand::rng();
        for _ in 0..1000 {
            let v = e.eval(0.0, &mut rng);
            assert!((0.0..1.0).contains(&v));
            let v = r.eval(0.0, &mut rng);
            assert!((10.0..20.0).contains(&v));
            let v = e2.eval(0.0, &mut rng);
            assert!((90.0..110.0).contains(&v));
        }
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = err("1 + ");
        assert_eq!(e.position, 5, "{e}");
        assert!(e.message.contains("end of the expression"), "{e}");
        let e = err("2 * (3 + 4");
        assert_eq!(e.position, 11);
        assert!(e.to_string().contains("expected ')'"), "{e}");
        let e = err("10*sinus(t)");
        assert_eq!(e.position, 4);
        assert!(e.message.contains("unknown name \"sinus\""), "{e}");
        assert!(e.message.contains("sin, cos"), "{e}");
        let e = err("pow(2)");
        assert!(e.message.contains("pow takes 2 argument(s), got 1"), "{e}");
        let e = err("rand(1)");
        assert!(e.message.contains("0 or 2"), "{e}");
        let e = err("sin t");
        assert!(e.message.contains("expected '(' after sin"), "{e}");
        let e = err("3 $ 4");
        assert_eq!(e.position, 3);
        assert!(e.message.contains("unexpected character '$'"), "{e}");
        let e = err("1 2");
        assert!(e.message.contains("expected an operator"), "{e}");
        assert!(err("   ").message.contains("empty"));
        assert!(err("()").message.contains("expected a number"));
    }
}
